"""Training checkpoints: Megatron `dist_checkpointing` directories and an atomic `latest` pointer.

Layout of a run directory:

    RUN/kocpt_model.json        architecture + padded vocabulary (mcore_llama/run_dir.py), so
                                `kocpt checkpoints convert --to hf RUN/iter_0000100` works
    RUN/iter_0000100/           one complete torch_dist checkpoint (model, optimizer, scheduler,
                                training state: step, consumed samples, stage; RNG per rank)
    RUN/latest                  "iter_0000100": written (tmp + rename) after the directory is
                                complete, so it only ever names a complete checkpoint

A checkpoint is written into `iter_0000100.partial` and renamed when every rank has finished, so
a run killed mid-save leaves a `.partial` directory that is never read (and is removed by the
next run). The model tensors use GPTModel's own sharded keys, the same as the converter's, so a
checkpoint saved at one TP/PP layout loads at another (the RNG state then starts afresh).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from mcore_llama.run_dir import LATEST, latest_checkpoint

PARTIAL_SUFFIX = ".partial"


def iteration_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / f"iter_{step:07d}"


def _write_latest(run_dir: Path, name: str) -> None:
    tmp = run_dir / (LATEST + ".tmp")
    tmp.write_text(name + "\n")
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, run_dir / LATEST)


def remove_partial(run_dir: str | Path) -> None:
    for stale in Path(run_dir).glob(f"iter_*{PARTIAL_SUFFIX}"):
        shutil.rmtree(stale, ignore_errors=True)


def prune(run_dir: str | Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` complete checkpoints (never the one `latest` names)."""
    run_dir = Path(run_dir)
    latest = latest_checkpoint(run_dir)
    complete = sorted(p for p in run_dir.glob("iter_???????") if (p / "metadata.json").is_file())
    for old in complete[:-keep_last]:
        if latest is None or old.resolve() != latest.resolve():
            shutil.rmtree(old, ignore_errors=True)


def rng_sharded_object(layout: dict):
    """This rank's RNG state as a ShardedObject indexed by (pp, tp, dp) rank."""
    from megatron.core import parallel_state
    from megatron.core.dist_checkpointing.mapping import ShardedObject
    from megatron.core.tensor_parallel import random as mrandom

    state = {
        "cpu": torch.get_rng_state(),
        "tracker": mrandom.get_cuda_rng_tracker().get_states(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
    }
    shape = (layout["pipeline"], layout["tensor"], layout["data"])
    offset = (
        parallel_state.get_pipeline_model_parallel_rank(),
        parallel_state.get_tensor_model_parallel_rank(),
        parallel_state.get_data_parallel_rank(),
    )
    return ShardedObject("rng_state", state, shape, offset, replica_id=0)


def restore_rng(state: dict) -> None:
    from megatron.core.tensor_parallel import random as mrandom

    torch.set_rng_state(state["cpu"])
    mrandom.get_cuda_rng_tracker().set_states(state["tracker"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(run_dir: str | Path, step: int, model, optimizer, scheduler, train_state: dict,
                    layout: dict, keep_last: int) -> Path:
    """Collective: every rank calls it. Returns the completed checkpoint directory."""
    from megatron.core import dist_checkpointing

    run_dir = Path(run_dir)
    final = iteration_dir(run_dir, step)
    partial = final.with_name(final.name + PARTIAL_SUFFIX)
    rank = torch.distributed.get_rank()
    if rank == 0:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    torch.distributed.barrier()
    model_sd = model.sharded_state_dict()
    state = {
        "model": model_sd,
        "optimizer": optimizer.sharded_state_dict(model_sd, is_loading=False),
        "scheduler": scheduler.state_dict(),
        "train_state": dict(train_state),
        "layout": dict(layout),
        "rng_state": rng_sharded_object(layout),
    }
    dist_checkpointing.save(state, str(partial))
    torch.distributed.barrier()
    if rank == 0:
        if final.exists():  # a re-save of the same step (e.g. resumed then signalled at once)
            shutil.rmtree(final)
        os.replace(partial, final)
        _write_latest(run_dir, final.name)
        prune(run_dir, keep_last)
    torch.distributed.barrier()
    return final


def load_common(path: str | Path) -> dict:
    from megatron.core import dist_checkpointing

    return dist_checkpointing.load_common_state_dict(str(path))


def load_model_weights(path: str | Path, model) -> None:
    """Only the model tensors (an init checkpoint, or a stage boundary)."""
    from megatron.core import dist_checkpointing

    loaded = dist_checkpointing.load({"model": model.sharded_state_dict()}, str(path))
    model.load_state_dict(loaded["model"], strict=True)


def load_checkpoint(path: str | Path, model, optimizer, scheduler, layout: dict, with_optimizer: bool) -> dict:
    """Restore model (+ optimizer and scheduler) and, at the same layout, the RNG. Returns the
    checkpoint's common state (train_state, layout, scheduler)."""
    from megatron.core import dist_checkpointing

    common = load_common(path)
    same_layout = common.get("layout") == layout
    model_sd = model.sharded_state_dict()
    request = {"model": model_sd}
    if with_optimizer:
        request["optimizer"] = optimizer.sharded_state_dict(model_sd, is_loading=True)
    if same_layout:
        request["rng_state"] = rng_sharded_object(layout)
    loaded = dist_checkpointing.load(request, str(path))
    model.load_state_dict(loaded["model"], strict=True)
    if with_optimizer:
        optimizer.load_state_dict(loaded["optimizer"])
        scheduler.load_state_dict(common["scheduler"])
    if same_layout:
        restore_rng(loaded["rng_state"])
    return common
