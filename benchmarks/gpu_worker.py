"""One Megatron-Core process of `benchmarks/gpu.py`: a correctness run or a throughput sweep.

    python -m benchmarks.gpu_worker TASK_JSON RESULT_FILE     (gpu.py starts it; not for users)

Each part runs in a fresh process: the CPU shim of `mcore_llama.runtime` lasts for its process
(a process that trained on CPU cannot use CUDA afterwards), and each throughput shape gets a clean
GPU. Models, DDP, the optimizer and the schedule come from the training stage itself
(`pretrain.stage_model.build_stage`, `pretrain.step.train_step`), so the benchmark runs the code
that `kocpt pretrain` runs, with a `TrainingRun` built here instead of from a YAML config.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path


import torch

from mcore_llama.build import causal_attention_mask
from mcore_llama.shape import LlamaShape, padded_vocab_size
from pretrain.config import (
    ModelSection,
    OptimizerSettings,
    PretrainConfig,
    RunConfig,
    StageConfig,
)
from pretrain.flops import flops_per_token
from pretrain.resolve import ParallelLayout, TrainingRun

GIB = 1024**3
LAYOUT = ParallelLayout(tensor=1, pipeline=1, data=1)

SHAPES = {
    # The demo's tiny Llama-2-shaped model, with a 4,000-row vocabulary.
    "tiny": LlamaShape(vocab_size=4000, hidden_size=64, intermediate_size=172, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256),
    # ~1.1B: TinyLlama-1.1B's shape (GQA, 4 KV heads), Llama-2's vocabulary.
    "1b": LlamaShape(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                     num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=4096),
    # Llama-2-7B's layers with the merged vocabulary of configs/llama2-7b.yaml (32,000 + ~14,000).
    "7b": LlamaShape(vocab_size=46000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                     num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096),
}
# The correctness runs: 5 optimizer steps of 2 micro-batches of 2 x 64 tokens, a checkpoint after
# step 2. The lr is high enough that the loss moves well beyond any tolerance in 5 steps.
TINY = dict(seq_length=64, micro_batch_size=2, micro_batches=2, steps=5, save_after=2, lr=3e-3)


def training_run(shape: LlamaShape, *, seq_length: int, micro_batch_size: int, micro_batches: int,
                 steps: int, lr: float, params_dtype: torch.dtype, recompute: bool,
                 layout: ParallelLayout = LAYOUT, trainable: str | list[str] = "all") -> TrainingRun:
    """The `TrainingRun` that build_stage / train_step read: no tokenizer, data or init needed."""
    pretrain = PretrainConfig(
        micro_batch_size=micro_batch_size, global_batch_size=micro_batch_size * micro_batches,
        seq_length=seq_length, recompute_activations=recompute,
        precision="bf16" if params_dtype == torch.bfloat16 else "fp32",
        optimizer=OptimizerSettings(lr=lr, min_lr=lr, warmup_steps=0, decay_style="constant"),
    )
    return TrainingRun(
        settings=RunConfig(pretrain=pretrain, model=ModelSection()), shape=shape,
        padded_vocab_size=padded_vocab_size(shape.vocab_size, layout.tensor), encoder=None, blend=[],
        stages=[StageConfig(name="benchmark", steps=steps, trainable=trainable)],
        world_size=layout.tensor * layout.pipeline * layout.data, layout=layout,
        init_kind="random", init_path=None, resume_from=None, params_dtype=params_dtype, stage_ends=[steps],
    )


def micro_batches(shape: LlamaShape, run: TrainingRun, count: int, device, seed: int = 1234) -> list[dict]:
    """`count` micro-batches of a learnable sequence: each token determines the next (a random
    successor table), so the loss falls fast from ln(vocab) and differences in training show."""
    generator = torch.Generator().manual_seed(seed)
    successor = torch.randint(0, shape.vocab_size, (shape.vocab_size,), generator=generator)
    mbs, seq = run.config.micro_batch_size, run.config.seq_length
    tokens = torch.empty(count, mbs, seq + 1, dtype=torch.long)
    tokens[:, :, 0] = torch.randint(0, shape.vocab_size, (count, mbs), generator=generator)
    for position in range(1, seq + 1):
        tokens[:, :, position] = successor[tokens[:, :, position - 1]]
    positions = torch.arange(seq, device=device).expand(mbs, seq)
    return [{"tokens": t[:, :-1].to(device), "labels": t[:, 1:].to(device), "position_ids": positions,
             "loss_mask": torch.ones(mbs, seq, device=device)} for t in tokens]


class Trainer:
    """One stage built by build_stage, stepping through fixed micro-batches with train_step."""

    def __init__(self, run: TrainingRun, device, *, use_transformer_engine, distributed_optimizer):
        from megatron.core.pipeline_parallel import get_forward_backward_func

        from pretrain.stage_model import build_stage
        from pretrain.step import make_forward_step

        self.run = run
        self.model, self.ddp, self.optimizer, self.scheduler = build_stage(
            run, run.stages[0], use_transformer_engine=use_transformer_engine,
            distributed_optimizer=distributed_optimizer)
        self.forward_backward = get_forward_backward_func()
        chars = torch.ones(run.padded_vocab_size, device=device)  # bits/char is not reported here
        self.forward_step = make_forward_step(causal_attention_mask(run.config.seq_length, device=device), chars)

    def step(self, batches: list[dict]) -> tuple[float, float]:
        from pretrain.step import train_step

        loss, grad_norm, stepped = train_step(self.run, self.ddp, self.optimizer, self.scheduler, iter(batches),
                                              self.forward_backward, self.forward_step, [])
        if not stepped:
            raise RuntimeError(f"non-finite loss {loss} or grad norm {grad_norm}")
        return loss, grad_norm

    def parameters(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in self.model.named_parameters()}


def correctness_run(task: dict, device, params_dtype: torch.dtype, use_te: bool, distributed_optimizer: bool) -> dict:
    """5 steps from the shared initial weights with a checkpoint after step 2, then a fresh stage
    restored from that checkpoint runs steps 3-5 again: losses and weights must be bit-identical."""
    from megatron.core import dist_checkpointing

    from mcore_llama.weights import load_megatron_checkpoint_into
    from pretrain import checkpointing

    shape = SHAPES["tiny"]
    run = training_run(shape, seq_length=TINY["seq_length"], micro_batch_size=TINY["micro_batch_size"],
                       micro_batches=TINY["micro_batches"], steps=TINY["steps"], lr=TINY["lr"],
                       params_dtype=params_dtype, recompute=False)
    per_step = TINY["micro_batches"]
    data = micro_batches(shape, run, TINY["steps"] * per_step, device)
    steps = [data[i * per_step:(i + 1) * per_step] for i in range(TINY["steps"])]
    options = dict(use_transformer_engine=use_te, distributed_optimizer=distributed_optimizer)
    init_dir = Path(task["init_dir"])
    trainer = Trainer(run, device, **options)
    if (init_dir / "metadata.json").is_file():
        load_megatron_checkpoint_into(trainer.model, init_dir)
    else:  # the first run (CPU fp32) writes the initial weights every other run starts from
        init_dir.mkdir(parents=True)
        dist_checkpointing.save(trainer.model.sharded_state_dict(), str(init_dir))
    trainer.ddp.broadcast_params()
    trainer.optimizer.reload_model_params()  # bf16: refresh the fp32 main weights (as train.py does)
    save_after = TINY["save_after"]
    run_dir = Path(task["work_dir"]) / f"resume-{task['name']}"
    losses, grad_norms = [], []
    for index, batches in enumerate(steps):
        loss, grad_norm = trainer.step(batches)
        losses.append(loss)
        grad_norms.append(grad_norm)
        if index + 1 == save_after:
            state = {"step": save_after, "consumed_samples": 0, "skipped_steps": 0, "stage": 0}
            saved = checkpointing.save_checkpoint(run_dir, save_after, trainer.model, trainer.optimizer,
                                                  trainer.scheduler, state, LAYOUT.to_dict(), keep_last=1)
    uninterrupted = trainer.parameters()
    del trainer
    gc.collect()
    resumed = Trainer(run, device, **options)  # fresh random weights until the checkpoint loads
    checkpointing.load_checkpoint(saved, resumed.model, resumed.optimizer, resumed.scheduler,
                                  LAYOUT.to_dict(), with_optimizer=True)
    resumed_losses = [resumed.step(batches)[0] for batches in steps[save_after:]]
    weights = resumed.parameters()
    identical = resumed_losses == losses[save_after:] and all(
        torch.equal(weights[name], value) for name, value in uninterrupted.items())
    return {"dtype": str(params_dtype).removeprefix("torch."), "spec": "transformer_engine" if use_te else "local",
            "distributed_optimizer": distributed_optimizer, "losses": losses, "grad_norms": grad_norms,
            "resume": {"saved_after_step": save_after, "resumed_losses": resumed_losses,
                       "bit_identical": identical}}


def correctness(task: dict) -> dict:
    on_gpu = torch.cuda.is_available()
    device = torch.device("cuda", torch.cuda.current_device()) if on_gpu else torch.device("cpu")
    if on_gpu:  # fp32 must mean fp32: no TF32 matmuls in the CPU-vs-GPU comparison
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        # Deterministic kernels wherever torch has them (scatter-adds in backward), so a resumed
        # run can repeat the uninterrupted one bit for bit; warn where it has none.
        torch.use_deterministic_algorithms(True, warn_only=True)
    # fp32 with the local spec and the plain optimizer: the same modules on CPU and GPU.
    runs = {"fp32": correctness_run({**task, "name": "fp32"}, device, torch.float32, False, False)}
    if on_gpu:  # the production path: bf16 params, fp32 main grads, distributed optimizer, TE spec
        from mcore_llama.build import uses_transformer_engine

        runs["bf16"] = correctness_run({**task, "name": "bf16"}, device, torch.bfloat16,
                                       uses_transformer_engine(), True)
    return {"device": "cuda" if on_gpu else "cpu", "runs": runs}


def throughput(task: dict) -> dict:
    """Tokens/s and MFU at each micro-batch size for one shape, recomputation on or off."""
    from mcore_llama.build import uses_transformer_engine

    device = torch.device("cuda", torch.cuda.current_device())
    shape = replace(SHAPES[task["size"]], num_hidden_layers=task["layers"])
    seq, recompute = task["seq_length"], task["recompute"]
    use_te = uses_transformer_engine()
    peak = task["peak_tflops"]
    trainer = None
    rows = []
    for mbs in task["micro_batch_sizes"]:
        count = max(1, task["tokens_per_step"] // (mbs * seq))
        run = training_run(shape, seq_length=seq, micro_batch_size=mbs, micro_batches=count, steps=1000,
                           lr=1e-5, params_dtype=torch.bfloat16, recompute=recompute)
        row = {"size": task["size"], "hidden_size": shape.hidden_size, "layers": shape.num_hidden_layers,
               "full_layers": task["full_layers"],
               "recompute": recompute, "micro_batch_size": mbs, "micro_batches": count, "seq_length": seq,
               "spec": "transformer_engine" if use_te else "local"}
        if rows and rows[-1]["status"] == "out of memory":
            rows.append({**row, "status": "skipped (a smaller micro batch ran out of memory)"})
            continue
        try:
            if trainer is None:
                trainer = Trainer(run, device, use_transformer_engine=use_te, distributed_optimizer=True)
            trainer.run = run  # same model and optimizer, this micro-batch size
            batches = micro_batches(shape, run, count, device)
            torch.cuda.reset_peak_memory_stats()
            for _ in range(task["warmup_steps"]):
                trainer.step(batches)
            torch.cuda.synchronize()
            started = time.perf_counter()
            for _ in range(task["timed_steps"]):
                loss, _ = trainer.step(batches)
            torch.cuda.synchronize()
            elapsed = time.perf_counter() - started
            tokens_per_s = task["timed_steps"] * count * mbs * seq / elapsed
            fpt = flops_per_token(shape, seq, run.padded_vocab_size)
            row.update(status="ok", step_time_s=elapsed / task["timed_steps"], tokens_per_s=tokens_per_s,
                       flops_per_token=fpt, mfu=tokens_per_s * fpt / (peak * 1e12) if peak else None,
                       peak_memory_gib=torch.cuda.max_memory_allocated() / GIB, last_loss=loss)
        except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
            if not isinstance(exc, torch.cuda.OutOfMemoryError) and "out of memory" not in str(exc).lower():
                raise  # TransformerEngine reports OOM as a RuntimeError; anything else is a failure
            row.update(status="out of memory")
            gc.collect()
            torch.cuda.empty_cache()
        rows.append(row)
    return {"rows": rows}


def real_widths(task: dict) -> dict:
    """Llama-2-7B's hidden size, FFN size and heads with a merged ~47K vocabulary, 1 layer, fp32 on
    CPU at this process group's TP: 3 steps from weights the TP=1 run saves (tests compare TPs).

    The embedding and output layer (47,104 padded rows x 4,096 each) are frozen; the layer trains.
    Training them too adds 12 bytes per element (fp32 grad + Adam moments), and with the layer
    alone training a TP=1 process already peaks at ~9 GB (measured): over what a test may take
    on a shared CPU machine. Their vocabulary-parallel forward and backward (the lookup over
    padded rows, the split logits with padded ids masked, the parallel cross entropy) still run
    at every layout; only their weight update is left out."""
    from megatron.core import dist_checkpointing

    from mcore_llama.weights import load_megatron_checkpoint_into

    tp = torch.distributed.get_world_size()
    shape = replace(SHAPES["7b"], vocab_size=task["vocab_size"], num_hidden_layers=1)
    run = training_run(shape, seq_length=task["seq_length"], micro_batch_size=1, micro_batches=2, steps=3,
                       lr=1e-4, params_dtype=torch.float32, recompute=False,
                       layout=ParallelLayout(tensor=tp, pipeline=1, data=1),
                       trainable=["decoder.*"])
    device = torch.device("cpu")
    trainer = Trainer(run, device, use_transformer_engine=False, distributed_optimizer=False)
    init_dir = Path(task["init_dir"])
    if (init_dir / "metadata.json").is_file():
        load_megatron_checkpoint_into(trainer.model, init_dir)
    else:
        if torch.distributed.get_rank() == 0:
            init_dir.mkdir(parents=True)
        torch.distributed.barrier()
        dist_checkpointing.save(trainer.model.sharded_state_dict(), str(init_dir))
    trainer.optimizer.reload_model_params()
    data = micro_batches(shape, run, 6, device)
    losses, grad_norms = [], []
    for step in range(3):
        loss, grad_norm = trainer.step(data[2 * step:2 * step + 2])
        losses.append(loss)
        grad_norms.append(grad_norm)
    output_rows = trainer.model.output_layer.weight.shape[0]
    return {"tensor_parallel": tp, "padded_vocab_size": run.padded_vocab_size, "output_rows_per_rank": output_rows,
            "losses": losses, "grad_norms": grad_norms}


def main(argv: list[str]) -> int:
    task, result_file = json.loads(argv[0]), Path(argv[1])
    from megatron.core import parallel_state

    from pretrain.processes import init_distributed

    tp = task.get("tensor_parallel", 1)
    init_distributed(ParallelLayout(tensor=tp, pipeline=1, data=1), seed=1234)
    try:
        result = {"correctness": correctness, "throughput": throughput, "real_widths": real_widths}[task["kind"]](task)
    finally:
        parallel_state.destroy_model_parallel()
        torch.distributed.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        result_file.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
