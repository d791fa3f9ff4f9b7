"""The training log: stdout, TensorBoard and a JSON-lines metrics file, written by global rank 0."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from pretrain.resolve import TrainingRun


class Logger:
    """stdout + TensorBoard + a JSON-lines metrics file, on global rank 0 only."""

    def __init__(self, run: TrainingRun):
        self.active = torch.distributed.get_rank() == 0
        self.writer = None
        self.losses_file = None
        if not self.active:
            return
        log = run.config.log
        tb_dir = log.tensorboard_dir or str(Path(run.config.checkpoint.dir) / "tensorboard")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(tb_dir)
        except ImportError:
            print("warning: tensorboard is not installed; logging to stdout only", flush=True)
        path = log.losses_file or str(Path(run.config.checkpoint.dir) / "metrics.jsonl")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.losses_file = open(path, "a")

    def print(self, text: str) -> None:
        if self.active:
            print(text, flush=True)

    def record(self, step: int, metrics: dict) -> None:
        if not self.active:
            return
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)
            self.writer.flush()
        self.losses_file.write(json.dumps({"step": step, **metrics}) + "\n")
        self.losses_file.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.losses_file is not None:
            self.losses_file.close()
