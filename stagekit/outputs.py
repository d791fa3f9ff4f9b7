"""Every stage's output, by one rule (what a user owns is never destroyed):

1. The output path is resolved (real path: symlinks, `..`, `~`) and refused, with or without
   `--overwrite`, when it equals, contains or lies inside any input of the run (`refuse_overlap`).
2. An existing output is replaced only with `--overwrite`, and only when it is an earlier output
   of the same stage, recognised by the marker file every stage writes into its output
   (`.kocpt-output.json`), or for a file output by the stage's own test of the file (a GGUF's
   magic). A plain file or a foreign directory is never replaced (`check_output`).
3. The new output is written under a temporary name beside it (`.NAME.tmp-HOST-PID-*`), then
   renamed; the previous output is deleted only once the new one is in place (`publish_directory`).
4. A rerun removes, and names, the temporary folders a killed run of the same output left
   (`remove_stale_staging`): those of runs that are no longer alive on this host.

`staged_directory` does 1-4 for a directory output in one `with` block.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from stagekit.errors import BadInput

MARKER = ".kocpt-output.json"
REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
GLOB_CHARS = re.compile(r"[*?\[]")

InputPaths = Mapping[str, "str | Path | Iterable[str | Path] | None"]


def resolved(path: str | Path) -> Path:
    """The real absolute path (symlinks followed, `..` and `~` resolved), also for paths that do not exist."""
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def _local_root(path: str | Path) -> Path | None:
    """The local path an input names; a glob names the folder before its first wildcard; None for
    remote (`gs://...`) and hub (`hf:NAME`) inputs, which no local output can overlap."""
    text = os.fspath(path)
    if REMOTE.match(text) or text.startswith("hf:"):
        return None
    wildcard = GLOB_CHARS.search(text)
    if wildcard:
        text = os.path.dirname(text[: wildcard.start()]) or "."
    return resolved(text)


def _as_list(paths) -> list:
    if paths is None:
        return []
    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    return [p for p in paths if p is not None]


def refuse_overlap(output: str | Path, inputs: InputPaths, output_flag: str = "--output") -> None:
    """Refuse an output that equals, contains or lies inside one of the run's inputs.

    `inputs` maps a flag name (`--model`) to one path or several. Remote outputs are compared as
    normalised strings.
    """
    out_text = os.fspath(output).rstrip("/")
    if REMOTE.match(out_text):
        for flag, paths in inputs.items():
            for path in _as_list(paths):
                text = os.fspath(path).rstrip("/")
                if REMOTE.match(text) and (text == out_text or text.startswith(out_text + "/") or out_text.startswith(text + "/")):
                    raise BadInput(f"{output_flag} {output} overlaps {flag} {path}: choose an output outside every input")
        return
    out = resolved(output)
    for flag, paths in inputs.items():
        for path in _as_list(paths):
            root = _local_root(path)
            if root is None:
                continue
            if root == out:
                raise BadInput(f"{output_flag} {output} is {flag} {path} itself: a run never writes over its own input "
                               "(with or without --overwrite); choose another output")
            if out in root.parents:
                raise BadInput(f"{output_flag} {output} contains {flag} {path}: replacing it would destroy that input "
                               "(with or without --overwrite); choose another output")
            if root in out.parents:
                raise BadInput(f"{output_flag} {output} lies inside {flag} {path}: an output inside an input would be read "
                               "back as input by later runs; choose an output outside it")


def read_marker(path: str | Path) -> dict | None:
    """The marker of a kocpt output directory, or None (not a directory, no marker, unreadable)."""
    marker = Path(path) / MARKER
    try:
        value = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) and isinstance(value.get("stage"), str) else None


def is_kocpt_output(path: str | Path) -> bool:
    """A directory some kocpt stage wrote (its marker), or a staging folder of one."""
    return read_marker(path) is not None


def write_marker(directory: str | Path, stage: str) -> None:
    """The marker names the stage and nothing that changes between runs: reruns stay byte-identical."""
    record = {"stage": stage}
    (Path(directory) / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def check_output(output: str | Path, *, stage: str, overwrite: bool, inputs: InputPaths = {},
                 recognise: Callable[[Path], bool] | None = None, output_flag: str = "--output") -> Path:
    """Apply rules 1 and 2 (see the module docstring); returns the output as given, as a Path.

    `recognise(path)` says whether an existing path is an earlier output of this stage; by default,
    a directory whose marker names `stage`.
    """
    refuse_overlap(output, inputs, output_flag)
    path = Path(output)
    if not os.path.lexists(path):
        return path
    if recognise is None and path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        return path  # an empty folder for a directory output: nothing to lose
    if not overwrite:
        raise BadInput(f"{path}: already exists (pass --overwrite to replace an earlier output of kocpt {stage})")
    if recognise is not None:
        if not recognise(path):
            raise BadInput(f"{path}: not an output of kocpt {stage}; --overwrite replaces only those. "
                           "Remove it yourself or choose another output")
        return path
    if not path.is_dir():
        raise BadInput(f"{path}: exists and is not a directory; --overwrite replaces only an earlier output of kocpt {stage}")
    marker = read_marker(path)
    if marker is None:
        raise BadInput(f"{path}: not an output of kocpt {stage} (no {MARKER}); --overwrite replaces only those. "
                       "Remove it yourself or choose another output")
    if marker["stage"] != stage:
        raise BadInput(f"{path}: an output of kocpt {marker['stage']}, not of kocpt {stage}; "
                       "--overwrite replaces only the same stage's outputs")
    return path


# ------------------------------------------------------------------------------- staging and publishing

def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def staging_prefix(target: str | Path) -> str:
    """`.NAME.tmp-HOST-PID-`: the run that owns a staging folder can be told from its name."""
    return f".{Path(target).name}.tmp-{_host()}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(target: str | Path, say: Callable[[str], None] | None = None) -> list[str]:
    """Remove the temporary siblings (`.NAME.tmp-*`, `.NAME.old-*`) that killed runs of `target` left.

    A staging folder of a run still alive on this host is left alone; so is one from another host.
    A `.NAME.old-*` folder holding the previous output while `target` is missing (a run killed
    between publish's two renames) is moved back to `target`, not deleted. Returns what was removed.
    """
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        return []
    removed, restored = [], None
    own = re.compile(re.escape(f".{target.name}.") + r"(tmp|old)-(.*)$")
    for entry in sorted(parent.iterdir()):
        match = own.match(entry.name)
        if not match:
            continue
        kind, rest = match.groups()
        if kind == "tmp":
            owner = re.match(r"(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-", rest)
            if owner and (owner["host"] != _host() or (int(owner["pid"]) != os.getpid() and _alive(int(owner["pid"])))):
                continue  # a run in progress (here or elsewhere)
            if owner and int(owner["pid"]) == os.getpid():
                continue
        elif (entry / target.name).exists() and not os.path.lexists(target) and restored is None:
            os.rename(entry / target.name, target)
            restored = entry
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(str(entry))
    if say and restored is not None:
        say(f"restored {target} from {restored} (a run was killed while replacing it)")
    if say and removed:
        say(f"removed {len(removed)} temporary item(s) left by an interrupted run: {', '.join(removed)}")
    return removed


def new_staging_dir(target: str | Path) -> Path:
    """An empty folder beside `target`, permissions as mkdir would give (mkdtemp makes it 0700)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=staging_prefix(target), dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    return staging


def write_file_atomic(path: str | Path, data: bytes) -> None:
    """Write a file under a temporary name beside it, then rename: never a half-written file, and a
    killed run's temporary file is removed by the next write of the same path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path)
    fd, tmp = tempfile.mkstemp(prefix=staging_prefix(path), dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make the file private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish_directory(staging: str | Path, target: str | Path) -> None:
    """Rename the finished `staging` directory to `target`; an existing `target` is moved aside first
    and deleted only once the new one is in place."""
    staging, target = Path(staging), Path(target)
    if not os.path.lexists(target):
        os.rename(staging, target)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rename(target, trash / target.name)
    os.rename(staging, target)
    shutil.rmtree(trash, ignore_errors=True)


@contextlib.contextmanager
def staged_directory(target: str | Path, *, stage: str, overwrite: bool, inputs: InputPaths = {},
                     say: Callable[[str], None] | None = None, output_flag: str = "--output") -> Iterator[Path]:
    """Check `target` (rules 1-2), remove stale staging (rule 4), yield a new staging folder holding
    the stage's marker, and publish it as `target` when the block succeeds (rule 3)."""
    check_output(target, stage=stage, overwrite=overwrite, inputs=inputs, output_flag=output_flag)
    remove_stale_staging(target, say)
    staging = new_staging_dir(target)
    try:
        write_marker(staging, stage)
        yield staging
        publish_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
