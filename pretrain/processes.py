"""The training processes: the process group and Megatron's parallel state, and stop requests.

torchrun (or `srun torchrun`, see launch.sh) starts one process per GPU/CPU slot; each joins the
process group (NCCL on GPUs, gloo on CPU) and `mcore_llama.runtime.init_model_parallel` sets up
tensor/pipeline groups and seeds. SIGUSR1/SIGTERM (SLURM's pre-timeout signal) or the launcher's
stop file ask every rank to checkpoint and leave at the next step boundary.
"""

from __future__ import annotations

import os
import signal
import socket

import torch

from mcore_llama.runtime import init_model_parallel
from pretrain.resolve import ParallelLayout

STOP_FILE_ENV = "KOCPT_STOP_FILE"  # the launcher touches it on SLURM's pre-timeout signal


def init_distributed(layout: ParallelLayout, seed: int) -> None:
    """Join the process group (a one-process group without torchrun), then Megatron's state."""
    if "RANK" not in os.environ:  # a single process without torchrun
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    on_gpu = torch.cuda.is_available()
    if on_gpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    torch.distributed.init_process_group(backend="nccl" if on_gpu else "gloo")
    init_model_parallel(layout.tensor, layout.pipeline, seed)


class StopRequest:
    """SIGUSR1/SIGTERM or the launcher's stop file -> checkpoint at the next step boundary."""

    def __init__(self):
        self.signal = None
        self.stop_file = os.environ.get(STOP_FILE_ENV)
        for signum in (signal.SIGUSR1, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum, _frame):
        self.signal = signal.Signals(signum).name

    def requested(self) -> str | None:
        """Collective: every rank agrees, so all of them checkpoint and leave together."""
        local = 1 if self.signal else 0
        if torch.distributed.get_rank() == 0 and self.stop_file and os.path.exists(self.stop_file):
            local = 2
        flag = torch.tensor([local], dtype=torch.int32)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if flag.item() == 2 and torch.distributed.get_rank() == 0:
            os.unlink(self.stop_file)
        return {0: None, 1: self.signal or "signal", 2: f"stop file {self.stop_file}"}[flag.item()]
