"""Continued pretraining with Megatron-Core, top to bottom.

    torchrun --nproc_per_node 2 pretrain/train.py configs/demo.yaml [--set KEY=VALUE ...]
    kocpt pretrain configs/demo.yaml --check          # validate and print the plan, no training
    bash pretrain/launch.sh configs/demo.yaml         # locally, or sbatch it on a SLURM cluster

1. Read the config and check everything that can be checked without GPUs or a process group
   (files, vocabulary, layout): a bad run costs one line on stderr, not a queue slot.
2. Start the process group and Megatron's parallel state; apply the CPU shim when CUDA is absent.
3. Build the blended GPTDataset (train/valid) and find where to start: the run's `latest`
   checkpoint, another run's checkpoint (`checkpoint.load`), or the initial weights (`init`).
4. For each stage: build the GPTModel, mark its trainable set, wrap it in Megatron DDP, create
   Megatron's optimizer and lr schedule, restore state, then loop over steps:
   forward/backward with `get_forward_backward_func` (any pipeline schedule), mask frozen
   embedding rows, check loss and grad norm are finite (skip or stop), step, log, evaluate,
   checkpoint. SIGUSR1/SIGTERM (or the launcher's stop file) -> checkpoint and exit 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import yaml

# `python pretrain/train.py` puts pretrain/ first on sys.path; the package imports need the root.
if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pretrain.config import (  # noqa: E402
    ConfigError,
    RunConfig,
    StageConfig,
    init_source,
    load_config,
    resolve_stages,
    to_dict,
    validate_layout,
    world_size_from_env,
)
from pretrain.model import LlamaShape  # noqa: E402
from pretrain.token_encoder import TokenEncoder, TokenizerError  # noqa: E402

EMBEDDING_PARAMS = ("embedding.word_embeddings.weight", "output_layer.weight")
STOP_FILE_ENV = "KOCPT_STOP_FILE"  # the launcher touches it on SLURM's pre-timeout signal


# --------------------------------------------------------------------------- 1. the plan


@dataclass
class RunPlan:
    """Everything resolved from the config before any process group exists."""

    run: RunConfig
    shape: LlamaShape
    padded_vocab_size: int
    encoder: TokenEncoder
    blend: list
    stages: list[StageConfig]
    world_size: int
    data_parallel: int
    init_kind: str
    init_path: str | None
    resume_from: Path | None
    params_dtype: torch.dtype
    stage_ends: list[int] = field(default_factory=list)

    @property
    def config(self):
        return self.run.pretrain

    @property
    def num_microbatches(self) -> int:
        return self.config.global_batch_size // (self.config.micro_batch_size * self.data_parallel)

    @property
    def train_steps(self) -> int:
        return self.stage_ends[-1]


def _model_source(run: RunConfig, encoder: TokenEncoder, init_kind: str, init_path: str | None):
    """(shape, padded rows stored, where) from the initial weights, or the `model:` section."""
    if init_kind == "hf":
        try:
            return LlamaShape.from_hf_dir(init_path), None, init_path
        except (FileNotFoundError, ValueError, KeyError) as exc:
            raise ConfigError(f"pretrain.init.hf: {exc}") from None
    if init_kind == "megatron_checkpoint":
        from checkpoints.metadata import read_model_metadata

        if not (Path(init_path) / "metadata.json").is_file():
            raise ConfigError(f"pretrain.init.megatron_checkpoint: {init_path} is not a Megatron dist checkpoint")
        try:
            meta = read_model_metadata(init_path)
        except ValueError as exc:
            raise ConfigError(f"pretrain.init.megatron_checkpoint: {exc}") from None
        return meta.shape, meta.padded_vocab_size, init_path
    section = run.model
    shape = LlamaShape(
        vocab_size=encoder.vocab_size,
        hidden_size=section.hidden_size,
        intermediate_size=section.intermediate_size,
        num_hidden_layers=section.num_hidden_layers,
        num_attention_heads=section.num_attention_heads,
        num_key_value_heads=section.num_key_value_heads or section.num_attention_heads,
        max_position_embeddings=section.max_position_embeddings,
        rope_theta=section.rope_theta,
        rms_norm_eps=section.rms_norm_eps,
        initializer_range=section.initializer_range,
    )
    try:
        shape.validate()
    except ValueError as exc:
        raise ConfigError(f"model: {exc}") from None
    return shape, None, "model section"


def plan_run(run: RunConfig, world_size: int | None = None) -> RunPlan:
    """All checks that need no process group. Raises ConfigError with a one-line message."""
    from pretrain import checkpointing
    from pretrain.data import expand_blend
    from pretrain.model import padded_vocab_size

    config = run.pretrain
    world_size = world_size or world_size_from_env()
    try:
        encoder = TokenEncoder.load(config.tokenizer)
    except TokenizerError as exc:
        raise ConfigError(f"pretrain.tokenizer: {exc}") from None
    init_kind, init_path = init_source(config)
    if init_path is not None and not Path(init_path).exists():
        raise ConfigError(f"pretrain.init.{init_kind}: {init_path} does not exist")
    shape, stored_padded, where = _model_source(run, encoder, init_kind, init_path)

    # A run directory that already has checkpoints fixes the model: resume it.
    run_dir = Path(config.checkpoint.dir)
    try:
        resume_from = checkpointing.read_latest(run_dir)
        if resume_from is None and config.checkpoint.load:
            resume_from = checkpointing.resolve_load_path(config.checkpoint.load)
    except FileNotFoundError as exc:
        raise ConfigError(f"pretrain.checkpoint: {exc}") from None
    if resume_from is not None:
        try:
            from checkpoints.metadata import read_model_metadata

            meta = read_model_metadata(resume_from)
            if meta.shape != shape and init_kind != "random":
                raise ConfigError(f"{resume_from}: its model differs from pretrain.init ({where})")
            shape, stored_padded, where = meta.shape, meta.padded_vocab_size, str(resume_from)
        except ValueError as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"pretrain.checkpoint: {exc}") from None

    if shape.vocab_size != encoder.vocab_size:
        raise ConfigError(
            f"vocabulary mismatch: tokenizer {config.tokenizer} has {encoder.vocab_size} pieces, "
            f"the model ({where}) has {shape.vocab_size} rows"
        )
    if run.model.base_vocab_size is not None and run.model.base_vocab_size > shape.vocab_size:
        raise ConfigError(f"model.base_vocab_size {run.model.base_vocab_size} > vocabulary {shape.vocab_size}")
    tp = config.parallel.tensor
    if stored_padded is not None:
        if stored_padded % tp:
            raise ConfigError(f"{where}: stored vocabulary rows {stored_padded} are not divisible by tensor parallel {tp}")
        padded = stored_padded
    else:
        padded = padded_vocab_size(shape.vocab_size, tp, config.make_vocab_size_divisible_by)
    if config.seq_length > shape.max_position_embeddings:
        raise ConfigError(f"pretrain.seq_length {config.seq_length} > max_position_embeddings {shape.max_position_embeddings}")
    dp = validate_layout(config, world_size, shape.num_attention_heads, shape.num_key_value_heads, shape.num_hidden_layers)

    blend = expand_blend(config)
    sha = encoder.sha256()
    for part in blend:
        if part.tokenizer_sha256 and part.tokenizer_sha256 != sha:
            raise ConfigError(
                f"pretrain.data.blend: {part.prefix} was tokenized with a different tokenizer than "
                f"{config.tokenizer} (sha256 {part.tokenizer_sha256[:12]} != {sha[:12]})"
            )
    stages = resolve_stages(config)
    ends, total = [], 0
    for index, stage in enumerate(stages):
        warmup = stage.warmup_steps if stage.warmup_steps is not None else config.optimizer.warmup_steps
        if warmup >= stage.steps:
            raise ConfigError(f"pretrain stage {index} ({stage.name}): warmup_steps {warmup} must be < its {stage.steps} steps")
        total += stage.steps
        ends.append(total)
    on_gpu = torch.cuda.is_available()
    precision = config.precision if config.precision != "auto" else ("bf16" if on_gpu else "fp32")
    if precision == "bf16" and not on_gpu:
        raise ConfigError("pretrain.precision: bf16 needs GPUs (CPU runs use fp32)")
    return RunPlan(
        run=run, shape=shape, padded_vocab_size=padded, encoder=encoder, blend=blend, stages=stages,
        world_size=world_size, data_parallel=dp, init_kind=init_kind, init_path=init_path,
        resume_from=resume_from, params_dtype=torch.bfloat16 if precision == "bf16" else torch.float32,
        stage_ends=ends,
    )


def describe(plan: RunPlan) -> str:
    from pretrain.flops import flops_per_token, parameter_counts

    config = plan.config
    params = parameter_counts(plan.shape, plan.padded_vocab_size)["total"]
    tokens_per_step = config.global_batch_size * config.seq_length
    lines = [
        "resolved config:",
        yaml.safe_dump({"pretrain": to_dict(config), "model": to_dict(plan.run.model)}, sort_keys=False).rstrip(),
        "derived:",
        f"  world_size={plan.world_size} tensor={config.parallel.tensor} pipeline={config.parallel.pipeline} "
        f"data={plan.data_parallel} micro_batches_per_step={plan.num_microbatches}",
        f"  model: {plan.shape.num_hidden_layers} layers, hidden {plan.shape.hidden_size}, "
        f"vocab {plan.shape.vocab_size} (padded {plan.padded_vocab_size}), {params / 1e6:.2f}M parameters, "
        f"{flops_per_token(plan.shape, config.seq_length, plan.padded_vocab_size) / 1e9:.3f} GFLOP/token",
        f"  tokens/step={tokens_per_step} steps={plan.train_steps} tokens={tokens_per_step * plan.train_steps:,} "
        f"stages={[(s.name, s.steps) for s in plan.stages]}",
        f"  init={plan.init_kind}{'' if plan.init_path is None else ':' + plan.init_path} "
        f"resume_from={plan.resume_from} precision={plan.params_dtype}",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- 2. processes


def init_distributed(plan: RunPlan) -> None:
    from megatron.core import parallel_state

    from pretrain.cpu_compat import apply_cpu_shim, cpu_rng_seed

    if "RANK" not in os.environ:  # a single process without torchrun
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    on_gpu = torch.cuda.is_available()
    if on_gpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    torch.distributed.init_process_group(backend="nccl" if on_gpu else "gloo")
    apply_cpu_shim()
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=plan.config.parallel.tensor,
        pipeline_model_parallel_size=plan.config.parallel.pipeline,
    )
    if on_gpu:
        from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

        torch.manual_seed(plan.config.seed)
        model_parallel_cuda_manual_seed(plan.config.seed)
    else:
        cpu_rng_seed(plan.config.seed)


def layout(plan: RunPlan) -> dict:
    return {"tensor": plan.config.parallel.tensor, "pipeline": plan.config.parallel.pipeline, "data": plan.data_parallel}


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


# --------------------------------------------------------------------------- 3. model per stage


def trainable(name: str, stage: StageConfig) -> bool:
    import fnmatch

    if stage.trainable == "all":
        return True
    if stage.trainable == "embeddings":
        return name in EMBEDDING_PARAMS
    return any(fnmatch.fnmatch(name, pattern) for pattern in stage.trainable)


def build_stage(plan: RunPlan, stage: StageConfig):
    """GPTModel (this rank's part) in Megatron DDP, its optimizer and lr schedule."""
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer, get_standard_config_overrides
    from megatron.core.optimizer.optimizer_config import ParamKey
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    from checkpoints.vocab_padding import mask_padded_vocab
    from pretrain.model import build_gpt_model

    config = plan.config
    tp = config.parallel.tensor
    model = build_gpt_model(
        plan.shape,
        tensor_parallel=tp,
        pipeline_parallel=config.parallel.pipeline,
        params_dtype=plan.params_dtype,
        make_vocab_size_divisible_by=plan.padded_vocab_size // tp,  # reproduces the stored padding
        recompute=config.recompute_activations,
    )
    mask_padded_vocab(model, plan.shape.vocab_size)  # padded ids never take probability mass
    for name, param in model.named_parameters():
        param.requires_grad_(trainable(name, stage))
    model.config.calculate_per_token_loss = True  # loss = Σ NLL / Σ tokens of the global batch
    on_gpu = torch.cuda.is_available()
    ddp = DistributedDataParallel(
        config=model.config,
        ddp_config=DistributedDataParallelConfig(
            grad_reduce_in_fp32=True,
            use_distributed_optimizer=on_gpu and plan.data_parallel > 1,  # not on CPU (DESIGN.md)
            overlap_grad_reduce=False,
        ),
        module=model,
    )
    opt = config.optimizer
    lr = stage.lr if stage.lr is not None else opt.lr
    min_lr = stage.min_lr if stage.min_lr is not None else min(opt.min_lr, lr)
    optimizer_config = OptimizerConfig(
        optimizer="adam",
        lr=lr,
        min_lr=min_lr,
        weight_decay=opt.weight_decay,
        adam_beta1=opt.adam_beta1,
        adam_beta2=opt.adam_beta2,
        adam_eps=opt.adam_eps,
        clip_grad=opt.clip_grad,
        bf16=plan.params_dtype == torch.bfloat16,
        params_dtype=plan.params_dtype,
        use_distributed_optimizer=ddp.ddp_config.use_distributed_optimizer,
    )
    overrides = get_standard_config_overrides(optimizer_config)
    if stage.new_rows_only:  # decoupled weight decay would move the frozen rows
        # (names seen through the DDP wrapper: "module.embedding.word_embeddings.weight")
        overrides[ParamKey(name=tuple("*" + name for name in EMBEDDING_PARAMS))] = {"wd_mult": 0.0}
    optimizer = get_megatron_optimizer(optimizer_config, [ddp], config_overrides=overrides)
    warmup = stage.warmup_steps if stage.warmup_steps is not None else opt.warmup_steps
    scheduler = OptimizerParamScheduler(
        optimizer,
        init_lr=0.0,
        max_lr=lr,
        min_lr=min_lr,
        lr_warmup_steps=warmup,
        lr_decay_steps=stage.steps,
        lr_decay_style=opt.decay_style,
        start_wd=opt.weight_decay,
        end_wd=opt.weight_decay,
        wd_incr_steps=stage.steps,
        wd_incr_style="constant",
    )
    model.config.finalize_model_grads_func = finalize_model_grads
    model.config.no_sync_func = ddp.no_sync
    model.config.grad_scale_func = optimizer.scale_loss
    return model, ddp, optimizer, scheduler


def frozen_row_masks(model, base_vocab_size: int) -> list[tuple[torch.nn.Parameter, slice]]:
    """(param, local rows < base_vocab_size) for this rank's embedding and output weights."""
    from megatron.core import parallel_state

    tp_rank = parallel_state.get_tensor_model_parallel_rank()
    masks = []
    for name, param in model.named_parameters():
        if name in EMBEDDING_PARAMS and param.requires_grad:
            local_rows = param.shape[0]
            start = tp_rank * local_rows
            frozen = max(0, min(base_vocab_size - start, local_rows))
            if frozen:
                masks.append((param, slice(0, frozen)))
    return masks


# --------------------------------------------------------------------------- the step


def loss_func(loss_mask, characters, output_tensor):
    """Per-token NLL -> (Σ NLL, tokens, reported [Σ NLL, tokens, characters])."""
    losses = output_tensor.float()
    mask = loss_mask.float()
    loss_sum = torch.sum(losses * mask)
    num_tokens = mask.sum().to(torch.int)
    report = torch.stack([loss_sum.detach(), mask.sum(), torch.sum(characters * mask)])
    return loss_sum, num_tokens, {"lm": report}


def make_forward_step(attention_mask, chars_table):
    def forward_step(data_iterator, model):
        batch = next(data_iterator)
        characters = chars_table[batch["labels"]].float()
        output = model(batch["tokens"], batch["position_ids"], attention_mask, labels=batch["labels"])
        return output, partial(loss_func, batch["loss_mask"], characters)

    return forward_step


def reduce_report(reports: list[dict]) -> torch.Tensor:
    """[Σ NLL, tokens, characters] over the global batch, identical on every rank."""
    from megatron.core import parallel_state

    total = torch.zeros(3, dtype=torch.float64)
    owner = parallel_state.is_pipeline_last_stage() and parallel_state.get_tensor_model_parallel_rank() == 0
    if owner:
        for report in reports:
            total += report["lm"].double()
    torch.distributed.all_reduce(total)
    return total


def run_batches(forward_backward, ddp, iterator, plan, forward_step, forward_only: bool):
    return forward_backward(
        forward_step_func=forward_step,
        data_iterator=iterator,
        model=[ddp],
        num_microbatches=plan.num_microbatches,
        seq_length=plan.config.seq_length,
        micro_batch_size=plan.config.micro_batch_size,
        forward_only=forward_only,
    )


def train_step(plan, ddp, optimizer, scheduler, iterator, forward_backward, forward_step, frozen_rows):
    ddp.zero_grad_buffer()
    optimizer.zero_grad()
    reports = run_batches(forward_backward, ddp, iterator, plan, forward_step, forward_only=False)
    total = reduce_report(reports)
    for param, rows in frozen_rows:  # stage 1 "new rows only": the base vocabulary stays put
        param.main_grad[rows] = 0
    loss = (total[0] / total[1]).item()
    optimizer.prepare_grads()
    grad_norm = float(optimizer.get_grad_norm())
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        return loss, grad_norm, False
    optimizer.step()
    scheduler.step(increment=1)
    return loss, grad_norm, True


@torch.no_grad()
def evaluate(plan, ddp, valid_dataset, forward_backward, forward_step) -> dict:
    from megatron.core import parallel_state

    from pretrain.data import micro_batches

    ddp.eval()
    iterator = micro_batches(
        valid_dataset, 0, plan.config.micro_batch_size, plan.data_parallel, parallel_state.get_data_parallel_rank()
    )
    total = torch.zeros(3, dtype=torch.float64)
    for _ in range(plan.config.eval.iters):
        total += reduce_report(run_batches(forward_backward, ddp, iterator, plan, forward_step, forward_only=True))
    ddp.train()
    loss = (total[0] / total[1]).item()
    return {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0)), "val_bpc": (total[0] / math.log(2) / total[2]).item()}


# --------------------------------------------------------------------------- logging


class Logger:
    """stdout + TensorBoard + a JSON-lines metrics file, on global rank 0 only."""

    def __init__(self, plan: RunPlan):
        self.active = torch.distributed.get_rank() == 0
        self.writer = None
        self.losses_file = None
        if not self.active:
            return
        log = plan.config.log
        tb_dir = log.tensorboard_dir or str(Path(plan.config.checkpoint.dir) / "tensorboard")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(tb_dir)
        except ImportError:
            print("warning: tensorboard is not installed; logging to stdout only", flush=True)
        path = log.losses_file or str(Path(plan.config.checkpoint.dir) / "metrics.jsonl")
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


# --------------------------------------------------------------------------- 4. the loop


def train(plan: RunPlan) -> int:
    from megatron.core import parallel_state
    from megatron.core.pipeline_parallel import get_forward_backward_func

    from pretrain import checkpointing
    from pretrain.data import build_datasets, characters_table, micro_batches
    from pretrain.flops import flops_per_token
    from pretrain.model import causal_attention_mask

    config = plan.config
    rank = torch.distributed.get_rank()
    run_dir = Path(config.checkpoint.dir)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpointing.remove_partial(run_dir)
        _write_run_metadata(plan, run_dir)
    torch.distributed.barrier()
    logger = Logger(plan)
    logger.print(describe(plan))
    stop = StopRequest()

    train_samples = plan.train_steps * config.global_batch_size
    eval_rounds = (plan.train_steps // config.eval.interval if config.eval.interval else 0) + 1
    valid_samples = config.eval.iters * config.global_batch_size * max(1, eval_rounds)
    cache_dir = config.data.cache_dir or str(run_dir / "data_cache")
    train_ds, valid_ds = build_datasets(config, plan.blend, plan.encoder.eos_id, train_samples, valid_samples, cache_dir)

    state = {"step": 0, "consumed_samples": 0, "skipped_steps": 0, "stage": 0}
    forward_backward = get_forward_backward_func()
    device = torch.cuda.current_device() if torch.cuda.is_available() else "cpu"
    attention_mask = causal_attention_mask(config.seq_length, device=device)
    chars_table = characters_table(plan.encoder.char_lengths(), plan.padded_vocab_size).to(device)
    forward_step = make_forward_step(attention_mask, chars_table)
    flops = flops_per_token(plan.shape, config.seq_length, plan.padded_vocab_size)
    tokens_per_step = config.global_batch_size * config.seq_length
    my_layout = layout(plan)
    steps_this_run = 0
    resume_from = plan.resume_from
    carried_weights = None  # the previous stage's weights, within one process

    def save(model_chunk, optimizer, scheduler, why: str):
        started = time.perf_counter()
        path = checkpointing.save_checkpoint(
            run_dir, state["step"], model_chunk, optimizer, scheduler, state, my_layout, config.checkpoint.keep_last
        )
        logger.print(f"saved checkpoint {path} ({why}, {time.perf_counter() - started:.1f}s)")

    for stage_index, stage in enumerate(plan.stages):
        stage_end = plan.stage_ends[stage_index]
        stage_start = stage_end - stage.steps
        if resume_from is not None:  # which stage does the checkpoint continue?
            common = checkpointing.load_common(resume_from)
            if common["train_state"]["step"] >= stage_end:
                continue
        elif state["step"] >= stage_end:
            continue
        model, ddp, optimizer, scheduler = build_stage(plan, stage)
        if resume_from is not None:
            same_stage = common["train_state"]["stage"] == stage_index
            checkpointing.load_checkpoint(resume_from, model, optimizer, scheduler, my_layout, with_optimizer=same_stage)
            state.update(common["train_state"], stage=stage_index)
            logger.print(
                f"resumed from {resume_from} at step {state['step']} "
                f"({'model, optimizer and schedule' if same_stage else 'model only: new stage'})"
            )
            resume_from = None
        elif carried_weights is not None:
            model.load_state_dict(carried_weights, strict=True)
        else:
            _load_initial_weights(plan, model)
        ddp.broadcast_params()
        state["stage"] = stage_index
        frozen_rows = frozen_row_masks(model, plan.run.model.base_vocab_size) if stage.new_rows_only else []
        trainable_count = sum(p.numel() for p in model.parameters() if p.requires_grad)
        logger.print(f"stage {stage_index} '{stage.name}': steps {stage_start + 1}..{stage_end}, "
                     f"{trainable_count:,} trainable parameters on rank {rank}")
        iterator = micro_batches(
            train_ds, state["consumed_samples"], config.micro_batch_size, plan.data_parallel,
            parallel_state.get_data_parallel_rank(),
        )
        last_saved = state["step"] if plan.resume_from is not None else -1
        while state["step"] < stage_end:
            reason = stop.requested()
            if reason:
                if last_saved != state["step"]:
                    save(model, optimizer, scheduler, reason)
                logger.print(f"stopping at step {state['step']}: {reason}")
                logger.close()
                return 0
            started = time.perf_counter()
            loss, grad_norm, stepped = train_step(
                plan, ddp, optimizer, scheduler, iterator, forward_backward, forward_step, frozen_rows
            )
            elapsed = time.perf_counter() - started
            state["step"] += 1
            state["consumed_samples"] += config.global_batch_size
            steps_this_run += 1
            if not stepped:
                state["skipped_steps"] += 1
                logger.print(f"step {state['step']}: non-finite loss {loss} or grad norm {grad_norm}; update skipped "
                             f"({state['skipped_steps']}/{config.max_nan_skips} skips allowed)")
                if state["skipped_steps"] > config.max_nan_skips:
                    logger.print(f"error: stopping at step {state['step']}: non-finite loss/gradients "
                                 f"(raise pretrain.max_nan_skips to skip more, or lower the lr)")
                    logger.close()
                    return 3
            tokens_per_s = tokens_per_step / elapsed
            metrics = {
                "loss": loss,
                "lr": optimizer.param_groups[0]["lr"] if optimizer.param_groups else 0.0,
                "grad_norm": grad_norm,
                "tokens_per_s": tokens_per_s,
                "step_time_s": elapsed,
                "mfu": tokens_per_s * flops / (plan.world_size * config.peak_tflops_per_gpu * 1e12),
                "stage": stage_index,
                "consumed_samples": state["consumed_samples"],
            }
            if config.log.interval and state["step"] % config.log.interval == 0:
                logger.print(
                    f"step {state['step']:>6}/{plan.train_steps} | {stage.name} | loss {loss:.6f} | "
                    f"lr {metrics['lr']:.3e} | grad_norm {grad_norm:.4f} | {tokens_per_s:,.0f} tokens/s | "
                    f"{elapsed:.3f}s/step | MFU {100 * metrics['mfu']:.2f}%"
                )
            final = state["step"] == plan.train_steps
            if (config.eval.interval and state["step"] % config.eval.interval == 0) or final:
                metrics.update(evaluate(plan, ddp, valid_ds, forward_backward, forward_step))
                logger.print(f"step {state['step']:>6} | validation loss {metrics['val_loss']:.4f} | "
                             f"ppl {metrics['val_ppl']:.2f} | bits/char {metrics['val_bpc']:.4f}")
            logger.record(state["step"], metrics)
            interval = config.checkpoint.interval
            if (interval and state["step"] % interval == 0) or state["step"] == stage_end:
                save(model, optimizer, scheduler, "end of stage" if state["step"] == stage_end else "interval")
                last_saved = state["step"]
            if config.exit_after_steps and steps_this_run >= config.exit_after_steps and not final:
                if last_saved != state["step"]:
                    save(model, optimizer, scheduler, "exit_after_steps")
                logger.print(f"stopping at step {state['step']}: exit_after_steps={config.exit_after_steps}")
                logger.close()
                return 0
        if stage_index + 1 < len(plan.stages):
            carried_weights = {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in model.state_dict().items()}
        del model, ddp, optimizer, scheduler
    logger.print(f"done: {state['step']} steps, {state['consumed_samples'] * config.seq_length:,} tokens, "
                 f"{state['skipped_steps']} skipped; latest checkpoint {checkpointing.read_latest(run_dir)}")
    logger.close()
    return 0


def _write_run_metadata(plan: RunPlan, run_dir: Path) -> None:
    """kocpt_model.json beside the iter_* dirs (the converter reads it to go back to HF)."""
    from checkpoints.metadata import ModelMetadata, write_model_metadata

    hf_config = {}
    if plan.init_kind == "hf":
        hf_config = json.loads((Path(plan.init_path) / "config.json").read_text())
    elif plan.init_kind == "megatron_checkpoint":
        from checkpoints.metadata import read_model_metadata

        hf_config = read_model_metadata(plan.init_path).hf_config
    write_model_metadata(
        run_dir,
        ModelMetadata(shape=plan.shape, dtype=plan.params_dtype, padded_vocab_size=plan.padded_vocab_size,
                      hf_config=hf_config),
    )


def _load_initial_weights(plan: RunPlan, model) -> None:
    if plan.init_kind == "random":
        return  # Megatron's own initialization (init_method_std from the shape), seeded
    if plan.init_kind == "hf":
        from checkpoints.convert import load_hf_into_megatron

        load_hf_into_megatron(model, plan.init_path, plan.shape)
    else:
        from checkpoints.convert import load_megatron_checkpoint_into

        load_megatron_checkpoint_into(model, plan.init_path)


# --------------------------------------------------------------------------- entry point


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Continued pretraining of a Llama model with Megatron-Core (run under torchrun "
        "for more than one process; see pretrain/launch.sh).",
    )
    parser.add_argument("config", nargs="?", help="YAML config with pretrain: (and model:) sections")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set optimizer.lr=1e-4 (repeatable)")
    parser.add_argument("--check", action="store_true", help="validate the config, print the plan and exit")
    parser.add_argument("--world-size", type=int, default=None, help="with --check: the world size to plan for")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        run = load_config(args.config, args.overrides)
        plan = plan_run(run, args.world_size)
    except ConfigError as exc:
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(describe(plan))
        return 0
    init_distributed(plan)
    try:
        return train(plan)
    finally:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
