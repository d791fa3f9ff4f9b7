"""Beam pipeline options shared by every pipeline of the project.

Locally (no `--runner`, or `--runner=DirectRunner`) Beam 2.77 first tries to download the Prism
runner binary and then falls back; on a machine without network that is slow and noisy. We pin
the FnApiRunner in multi_processing mode instead, which is correct across worker processes
(see DESIGN.md). Any other runner (Dataflow, Flink, Spark, Portable) and all of its options pass
through untouched.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import shutil
import sys

from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    StandardOptions,
    WorkerOptions,
)


class UsageError(ValueError):
    """Bad command-line input: printed as one line, exit status 2."""


def _beam_option_parser() -> argparse.ArgumentParser:
    """A parser that knows every option of every `PipelineOptions` subclass loaded now.

    This is how Beam itself collects its options (`PipelineOptions.get_all_options`): Dataflow,
    Flink, Spark, portable and direct-runner options all live in subclasses of PipelineOptions.
    """
    parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    seen, pending = set(), list(PipelineOptions.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if str(cls) in seen:  # a class loaded twice would add its options twice
            continue
        seen.add(str(cls))
        try:
            cls._add_argparse_args(parser)
        except argparse.ArgumentError:
            continue  # a subclass redefining another's option: the first definition is enough
    return parser


def split_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """(our arguments, Beam's arguments); anything neither knows raises UsageError naming it.

    `parse_known_args` alone hands every unknown argument to Beam, which drops what it cannot
    parse with a warning: a stray path or a misspelt option would vanish without a word.
    """
    args, rest = parser.parse_known_args(argv)
    _, unknown = _beam_option_parser().parse_known_args(rest)
    if unknown:
        raise UsageError(f"unrecognized argument(s): {' '.join(unknown)} (not an option of this stage or of Beam)")
    return args, rest


def prepare_output(output: str, say) -> None:
    """Create a local output's missing parent folder and remove `OUTPUT.tmp-*` folders of killed runs.

    `say` prints one line (the removal of stale folders is reported, not silent).
    """
    if "://" in output:
        return  # object stores have no folders to create, and Beam writes there directly
    parent = os.path.dirname(os.path.abspath(output))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{output}: cannot create its parent folder {parent} ({exc.strerror or exc})") from None
    stale = sorted(path for path in glob.glob(glob.escape(output) + ".tmp-*") if os.path.isdir(path))
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    if stale:
        say(f"removed {len(stale)} temporary folder(s) of an earlier interrupted run: {', '.join(stale)}")


def absolute(path: str) -> str:
    """A local path made absolute; URLs (gs://, s3://, ...) unchanged.

    Paths handed to workers must not depend on this process's folder: an external worker pool
    (PortableRunner) or a cluster's workers run in folders of their own.
    """
    return path if "://" in path else os.path.abspath(path)


LOCAL_RUNNER_ALIASES = {None, "DirectRunner", "SwitchingDirectRunner", "FnApiRunner"}


def pipeline_options(beam_args: list[str], default_workers: int | None = None) -> PipelineOptions:
    """PipelineOptions from the arguments our own parser did not consume.

    Local runs get the FnApiRunner with `direct_running_mode=multi_processing` and
    `direct_num_workers` (default: the number of CPU cores) unless the user set them.
    """
    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    if standard.runner in LOCAL_RUNNER_ALIASES:
        standard.runner = "FnApiRunner"
        direct = options.view_as(DirectOptions)
        if "--direct_running_mode" not in " ".join(beam_args):
            direct.direct_running_mode = "multi_processing"
        if not any(arg.startswith("--direct_num_workers") for arg in beam_args):
            direct.direct_num_workers = default_workers or os.cpu_count() or 1
    worker = options.view_as(WorkerOptions)
    if not any(arg.startswith("--default_sdk_harness_log_level") for arg in beam_args):
        worker.default_sdk_harness_log_level = "WARNING"  # workers log every channel at INFO
    return options


def parallelism_hint(options: PipelineOptions) -> int:
    """How many workers will share the job: the local worker count, or the cluster's maximum."""
    if is_local(options):
        return options.view_as(DirectOptions).direct_num_workers or 1
    return options.get_all_options().get("max_num_workers") or 16


def is_local(options: PipelineOptions) -> bool:
    return options.view_as(StandardOptions).runner == "FnApiRunner"


@contextlib.contextmanager
def worker_logs_to(log_path: str | None):
    """Send this process's and its worker processes' stderr to `log_path` while the block runs.

    The FnApiRunner's worker subprocesses inherit stderr and log every gRPC channel (and every
    error several times over) before any option reaches them; a user should see one line per
    problem, and the full log stays in the file. With `log_path=None` nothing is redirected.
    """
    if log_path is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
