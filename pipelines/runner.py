"""Beam pipeline options shared by every pipeline of the project.

Locally (no `--runner`, or `--runner=DirectRunner`) Beam 2.77 first tries to download the Prism
runner binary and then falls back; on a machine without network that is slow and noisy. We pin
the FnApiRunner in multi_processing mode instead, which is correct across worker processes
(see DESIGN.md). Any other runner (Dataflow, Flink, Spark, Portable) and all of its options pass
through untouched.
"""

from __future__ import annotations

import contextlib
import os
import sys

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions, WorkerOptions

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
