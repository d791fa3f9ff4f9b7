"""The corpus job's paths: which inputs it reads (never a kocpt output below them), which earlier
outputs it deduplicates against, and how its output is checked and published (stagekit's rule)."""

from __future__ import annotations

import argparse
import json
import os
import re

from apache_beam.io.filesystems import FileSystems

from corpus.records import HF_PREFIX, SUPPORTED_TYPES, input_format, is_hf_dataset_dir
from pipelines import corpus_steps as steps
from pipelines.runner import UsageError, absolute
from stagekit.outputs import check_output, is_kocpt_output, publish_directory, read_marker, refuse_overlap

STAGE = "corpus"  # names this stage's outputs (stagekit.outputs)
# Temporary folders of a run: the Beam jobs' `OUTPUT.tmp-1a2b3c4d`, stagekit's `.NAME.tmp-HOST-PID-*`.
STAGING_NAME = re.compile(r"\.tmp-[0-9a-f]{8}$|^\..+\.(tmp|old)-")


def expand_inputs(patterns: list[str]) -> tuple[list[tuple[str, str, int]], list[str]]:
    """(every input as (kind, name, size in bytes), what was skipped); sorted, unique.

    kind is "file" or "dataset". Directories are read recursively. A file of another type found
    in a directory or by a glob is skipped and returned; a file named by itself must be readable.
    A folder below a directory input that is a kocpt output (or a run's temporary folder) is
    skipped and returned with a trailing "/".
    """
    found: dict[str, tuple[str, str, int]] = {}
    skipped: set[str] = set()
    skipped_outputs: set[str] = set()
    for pattern in patterns:
        if pattern.startswith(HF_PREFIX):
            found[pattern] = ("dataset", pattern, 0)
            continue
        if os.path.isdir(pattern):
            if is_hf_dataset_dir(pattern):
                size = sum(entry.stat().st_size for entry in os.scandir(pattern) if entry.is_file())
                found[pattern] = ("dataset", pattern, size)
                continue
            matches, outputs = _walk_skipping_outputs(pattern)
            skipped_outputs.update(outputs)
            if not matches and outputs:
                raise UsageError(f"{pattern}: holds only kocpt outputs ({', '.join(sorted(outputs))}), no raw input")
            pattern = os.path.join(pattern, "**")
        else:
            matches = FileSystems.match([pattern])[0].metadata_list
        if not matches:
            raise UsageError(f"{pattern}: no such file (or nothing matches)")
        supported = [m for m in matches if input_format(m.path) in ("text", "jsonl", "parquet")]
        if not supported:
            raise UsageError(f"{pattern}: no supported input files ({SUPPORTED_TYPES})")
        skipped.update(m.path for m in matches if input_format(m.path) is None)
        for meta in supported:
            found[meta.path] = ("file", meta.path, meta.size_in_bytes)
    return [found[name] for name in sorted(found)], sorted(skipped - set(found)) + sorted(skipped_outputs)


def _walk_skipping_outputs(directory: str) -> tuple[list, set[str]]:
    """Every file under a local `directory` (as FileSystems metadata), and the folders below it that
    are kocpt outputs or a run's temporary folders: those are never read as raw input (an earlier
    corpus in the input folder would otherwise come back as input, its rejected/ and index/ too)."""
    from apache_beam.io.filesystem import FileMetadata

    files, outputs = [], set()
    for root, dirs, names in os.walk(directory):
        for name in list(dirs):
            path = os.path.join(root, name)
            if is_kocpt_output(path) or is_legacy_corpus(path) or STAGING_NAME.search(name):
                outputs.add(path.rstrip("/") + "/")
                dirs.remove(name)
        dirs.sort()
        for name in sorted(names):  # as Beam's LocalFileSystem lists a folder (os.walk, unreadable skipped)
            path = os.path.join(root, name)
            try:
                files.append(FileMetadata(path, os.path.getsize(path), os.path.getmtime(path)))
            except OSError:
                continue
    return files, outputs


def is_legacy_corpus(path: str) -> bool:
    """A corpus output written before outputs carried stagekit's marker: manifest.json beside shards/."""
    return os.path.isfile(os.path.join(path, "manifest.json")) and os.path.isdir(os.path.join(path, "shards"))


def is_corpus_output(path: str) -> bool:
    """An earlier output of this stage (what --overwrite may replace)."""
    marker = read_marker(path)
    return marker["stage"] == STAGE if marker else is_legacy_corpus(path)


def check_corpus_output(output: str, args: argparse.Namespace) -> None:
    """stagekit's output rule: never an input (--input, --dedup-against) or inside one; an existing
    output is replaced only with --overwrite and only when it is an earlier corpus output."""
    inputs = {"--input": args.input, "--dedup-against": args.dedup_against}
    if "://" not in output:
        check_output(output, stage=STAGE, overwrite=args.overwrite, inputs=inputs,
                     recognise=lambda path: path.is_dir() and is_corpus_output(str(path)))
        return
    refuse_overlap(output, inputs)  # object stores: an output is a corpus by its manifest.json
    if FileSystems.exists(FileSystems.join(output, "manifest.json")) and not args.overwrite:
        raise UsageError(f"{output}: already exists (use --overwrite to replace an earlier corpus output)")


def previous_index_files(outputs: list[str]) -> list[str]:
    """The index files of earlier outputs named by --dedup-against, each checked to exist."""
    files = []
    for previous in outputs:
        previous = previous.rstrip("/")
        manifest_path = FileSystems.join(previous, "manifest.json")
        if not FileSystems.exists(manifest_path):
            raise UsageError(f"{previous}: no manifest.json (not a finished kocpt corpus output)")
        with FileSystems.open(manifest_path) as handle:
            entries = json.loads(handle.read().decode("utf-8")).get("index")
        if not entries:
            raise UsageError(f"{previous}: its manifest.json lists no index/ (written by an older kocpt: rerun it)")
        for entry in entries:
            path = FileSystems.join(previous, entry["file"])
            if not FileSystems.exists(path):
                raise UsageError(f"{path}: index file named in {manifest_path} is missing")
            files.append(absolute(path))  # read by workers
    return files


def promote(staging: str, output: str, overwrite: bool) -> None:
    """Move the finished staging directory into place; an old output is removed only after.

    The job left its manifest as `manifest.pending.json`; it becomes `manifest.json` here, after
    the job finished, so no folder holds a manifest before its job is complete.
    """
    pending, final = FileSystems.join(staging, steps.MANIFEST_PENDING), FileSystems.join(staging, "manifest.json")
    if FileSystems.exists(output):
        if not overwrite:
            raise UsageError(f"{output}: already exists (use --overwrite to replace it)")
        if os.path.isdir(output):
            os.replace(pending, final)
            publish_directory(staging, output)
            return
        if "://" not in output:  # check_corpus_output refused it already; never delete a plain file
            raise UsageError(f"{output}: exists and is not a corpus output")
        FileSystems.delete([output])
    if os.path.isdir(staging):
        os.replace(pending, final)
        os.replace(staging, output)
        return
    # Object stores have no directory rename: move files one by one, the manifest last.
    files = sorted(meta.path for meta in FileSystems.match([FileSystems.join(staging, "**")])[0].metadata_list)
    files.sort(key=lambda path: path == pending)
    targets = [output + (path if path != pending else final)[len(staging):] for path in files]
    FileSystems.rename(files, targets)
