"""The pretraining config: a YAML file's `pretrain:` (and `model:`) section plus CLI overrides.

Every field is typed and checked by `load_config()` (through the shared loader, stagekit.config)
before any process group starts, so a bad layout or a missing file costs one line on stderr
instead of a queue slot. Overrides use dotted keys relative to `pretrain:`, as in
`--set optimizer.lr=1e-4 parallel.tensor=2 stages.0.steps=10`, or name the section
(`--set pretrain.seq_length=128 model.hidden_size=128`).

    pretrain:
      tokenizer: demo-output/tokenizer          # dir with tokenizer.model (or the .model file)
      init: {megatron_checkpoint: DIR}          # or {hf: DIR}, or random (needs a model: section)
      parallel: {tensor: 2, pipeline: 1}        # data parallel = world size / (tensor × pipeline)
      micro_batch_size: 2
      global_batch_size: 8
      seq_length: 64
      train_steps: 20                           # or train_tokens: 1.0e9 (steps = tokens / batch tokens)
      optimizer: {lr: 3e-4, min_lr: 3e-5, warmup_steps: 2, weight_decay: 0.1, clip_grad: 1.0}
      stages:                                   # optional; default: one stage training everything
        - {name: embeddings, steps: 4, trainable: embeddings, new_rows_only: true, lr: 1e-3}
        - {name: full, steps: 16, trainable: all}
      data:
        blend: [{path: demo-output/tokenized, weight: 0.9}, {path: en-tokenized, weight: 0.1}]
        split: "95,5,0"
      checkpoint: {dir: demo-output/pretrain, interval: 10, keep_last: 2}
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from stagekit.config import load_section
from stagekit.errors import BadInput

# A config that cannot run; the message says which key and why. The one bad-input error of
# every stage, under the name pretrain/ has always used.
ConfigError = BadInput


@dataclass
class ParallelConfig:
    tensor: int = 1
    pipeline: int = 1


@dataclass
class OptimizerSettings:
    lr: float = 3.0e-4
    min_lr: float = 3.0e-5
    warmup_steps: int = 0
    decay_style: str = "cosine"  # cosine | linear | constant
    weight_decay: float = 0.1
    clip_grad: float = 1.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1.0e-8


@dataclass
class StageConfig:
    """One stage of staged training: its own step count, lr schedule and trainable set."""

    name: str = "full"
    steps: int = 0  # 0 in a single-stage run means "all of train_steps"
    trainable: str | list[str] = "all"  # all | embeddings | [glob patterns of parameter names]
    new_rows_only: bool = False  # embeddings: rows < model.base_vocab_size get no update
    lr: float | None = None  # None: optimizer.lr
    min_lr: float | None = None
    warmup_steps: int | None = None

    def schedule(self, optimizer: "OptimizerSettings") -> tuple[float, float, int]:
        """(peak lr, min lr, warmup steps) of this stage: its own, else the optimizer section's."""
        lr = self.lr if self.lr is not None else optimizer.lr
        min_lr = self.min_lr if self.min_lr is not None else min(optimizer.min_lr, lr)
        warmup = self.warmup_steps if self.warmup_steps is not None else optimizer.warmup_steps
        return lr, min_lr, warmup

    def scheduler_settings(self, optimizer: "OptimizerSettings") -> dict:
        """This stage's Megatron OptimizerParamScheduler settings, keyed as in its state_dict."""
        lr, min_lr, warmup = self.schedule(optimizer)
        return {"max_lr": lr, "min_lr": min_lr, "lr_warmup_steps": warmup, "lr_decay_steps": self.steps,
                "lr_decay_style": optimizer.decay_style, "start_wd": optimizer.weight_decay,
                "end_wd": optimizer.weight_decay, "wd_incr_steps": self.steps, "wd_incr_style": "constant"}


@dataclass
class BlendEntry:
    path: str
    weight: float = 1.0


@dataclass
class DataConfig:
    blend: list[BlendEntry] = field(default_factory=list)
    split: str = "98,2,0"  # train,valid,test shares of documents (Megatron's --split)
    seed: int = 1234
    eod_mask_loss: bool = False
    cache_dir: str | None = None  # GPTDataset index cache; default: <checkpoint.dir>/data_cache


RESUME_SCHEDULE = ("refuse", "checkpoint", "config")


@dataclass
class CheckpointConfig:
    dir: str = "pretrain-output"
    interval: int = 100  # steps; 0 = only at the end (and on signals)
    keep_last: int = 3
    load: str | None = None  # resume from another run: its dir (uses latest) or an iter_* dir
    # Resuming mid-stage with a different lr schedule (lr, min_lr, warmup, steps, decay, weight decay)
    # than the checkpoint's: refuse (Megatron-LM's default), keep the checkpoint's (Megatron-LM's
    # --use-checkpoint-opt_param-scheduler) or take this config's from the resumed step (--override-opt_param-scheduler).
    resume_schedule: str = "refuse"  # refuse | checkpoint | config


@dataclass
class ValidationConfig:
    interval: int = 0  # steps; 0 = only at the end
    iters: int = 2  # validation batches per evaluation


@dataclass
class LogConfig:
    interval: int = 1
    tensorboard_dir: str | None = None  # default: <checkpoint.dir>/tensorboard
    losses_file: str | None = None  # JSON lines of per-step metrics (tests and plots read it)


@dataclass
class PretrainConfig:
    tokenizer: str = ""
    init: str | dict = "random"  # random | {hf: DIR} | {megatron_checkpoint: DIR}
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    micro_batch_size: int = 1
    global_batch_size: int = 8
    seq_length: int = 2048
    train_steps: int | None = None
    train_tokens: float | None = None
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    stages: list[StageConfig] = field(default_factory=list)
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | bf16 | fp32
    recompute_activations: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: ValidationConfig = field(default_factory=ValidationConfig)
    log: LogConfig = field(default_factory=LogConfig)
    max_nan_skips: int = 0  # steps with a non-finite loss/grad to skip before stopping
    make_vocab_size_divisible_by: int = 128
    peak_tflops_per_gpu: float = 312.0  # A100 bf16 dense; MFU is reported against it
    seed: int = 1234
    exit_after_steps: int | None = None  # stop (with a checkpoint) after this many steps this run


@dataclass
class RopeScalingSection:
    """`model.rope_scaling:` — Llama-3.1's RoPE scaling (HF rope_type llama3; 3.1 8B's values)."""

    rope_type: str = "llama3"  # the only scaling Megatron's Llama RoPE implements
    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclass
class ModelSection:
    """`model:` — the architecture when no HF/Megatron checkpoint supplies it (random init)."""

    hidden_size: int = 64
    intermediate_size: int = 172
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int | None = None
    max_position_embeddings: int = 4096
    rope_theta: float = 10000.0  # Llama-3: 500000
    rope_scaling: RopeScalingSection | None = None  # null: plain RoPE
    tie_word_embeddings: bool = False  # one matrix for input embeddings and LM head (SmolLM2, Llama-3.2 1B/3B)
    rms_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    # Rows inherited from the base model (Llama-2: 32000): read from the model kocpt resized; set it only
    # for a model resized elsewhere (when both exist they must agree).
    base_vocab_size: int | None = None
    vocab_size: int | None = None  # only for `kocpt plan` when the tokenizer is not at hand


@dataclass
class RunConfig:
    pretrain: PretrainConfig
    model: ModelSection
    source: str = ""


# --- loading: the shared loader (stagekit.config) for the `pretrain:` and `model:` sections ---


def parse_overrides(items: list[str]) -> list[str]:
    """`--set` items as `section.key=value`: keys are relative to `pretrain:` unless they start with
    `pretrain.` or `model.` (so `optimizer.lr=1e-4`, `eval.interval=0` and `tokenizer=DIR` are pretrain's)."""
    qualified = []
    for item in items:
        key, equals, _ = item.partition("=")
        if not equals:
            raise ConfigError(f"--set {item}: expected KEY=VALUE (e.g. optimizer.lr=1e-4)")
        qualified.append(item if key.strip().startswith(("pretrain.", "model.")) else "pretrain." + item.lstrip())
    return qualified


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Read, override, type-check and validate. Raises ConfigError with a one-line message."""
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"{path}: no such config file")
    sets = parse_overrides(list(overrides))
    config = RunConfig(
        pretrain=load_section(PretrainConfig, "pretrain", path, sets),
        model=load_section(ModelSection, "model", path, sets),
        source=str(path or ""),
    )
    validate_static(config)
    return config


# --- validation that needs no model and no process group ------------------------------------


def init_source(config: PretrainConfig) -> tuple[str, str | None]:
    """('random', None) | ('hf', DIR) | ('megatron_checkpoint', DIR)."""
    init = config.init
    if init in ("random", None, ""):
        return "random", None
    if isinstance(init, dict) and len(init) == 1:
        kind, value = next(iter(init.items()))
        if kind in ("hf", "megatron_checkpoint") and isinstance(value, str) and value:
            return kind, value
    raise ConfigError(f"pretrain.init: expected random, {{hf: DIR}} or {{megatron_checkpoint: DIR}}, got {init!r}")


def validate_static(run: RunConfig) -> None:
    config = run.pretrain
    init_source(config)
    if not config.tokenizer:
        raise ConfigError("pretrain.tokenizer: required (the tokenizer directory the data was made with)")
    for name in ("tensor", "pipeline"):
        value = getattr(config.parallel, name)
        if value < 1:
            raise ConfigError(f"pretrain.parallel.{name}: must be >= 1, got {value}")
    for name in ("micro_batch_size", "global_batch_size", "seq_length"):
        if getattr(config, name) < 1:
            raise ConfigError(f"pretrain.{name}: must be >= 1, got {getattr(config, name)}")
    if not (math.isfinite(config.peak_tflops_per_gpu) and config.peak_tflops_per_gpu > 0):
        raise ConfigError(f"pretrain.peak_tflops_per_gpu: must be a number > 0, got {config.peak_tflops_per_gpu}")
    if config.train_steps is None and config.train_tokens is None and not config.stages:
        raise ConfigError("pretrain: set train_steps, train_tokens or stages")
    if config.train_steps is not None and config.train_tokens is not None:
        raise ConfigError("pretrain: set train_steps or train_tokens, not both")
    if config.precision not in ("auto", "bf16", "fp32"):
        raise ConfigError(f"pretrain.precision: auto, bf16 or fp32, got {config.precision!r}")
    opt = config.optimizer
    if opt.decay_style not in ("cosine", "linear", "constant"):
        raise ConfigError(f"pretrain.optimizer.decay_style: cosine, linear or constant, got {opt.decay_style!r}")
    if not 0 <= opt.min_lr <= opt.lr:
        raise ConfigError(f"pretrain.optimizer: need 0 <= min_lr <= lr, got min_lr={opt.min_lr} lr={opt.lr}")
    if not config.data.blend:
        raise ConfigError("pretrain.data.blend: at least one tokenized dataset is required")
    for index, entry in enumerate(config.data.blend):
        if entry.weight <= 0:
            raise ConfigError(f"pretrain.data.blend.{index}.weight: must be > 0, got {entry.weight}")
    try:
        split = [float(x) for x in config.data.split.split(",")]
    except ValueError:
        split = []
    if len(split) != 3 or any(x < 0 for x in split) or split[0] <= 0:
        raise ConfigError(f"pretrain.data.split: expected 'train,valid,test' weights, got {config.data.split!r}")
    if config.checkpoint.resume_schedule not in RESUME_SCHEDULE:
        raise ConfigError(f"pretrain.checkpoint.resume_schedule: {', '.join(RESUME_SCHEDULE)}, "
                          f"got {config.checkpoint.resume_schedule!r}")
    if config.checkpoint.keep_last < 1:
        raise ConfigError(f"pretrain.checkpoint.keep_last: must be >= 1, got {config.checkpoint.keep_last}")
    for index, stage in enumerate(config.stages):
        where = f"pretrain.stages.{index}"
        if stage.steps < 1:
            raise ConfigError(f"{where}.steps: must be >= 1, got {stage.steps}")
        if isinstance(stage.trainable, str) and stage.trainable not in ("all", "embeddings"):
            raise ConfigError(f"{where}.trainable: all, embeddings or a list of name patterns, got {stage.trainable!r}")
    if config.stages and config.train_steps is not None:
        total = sum(stage.steps for stage in config.stages)
        if total != config.train_steps:
            raise ConfigError(f"pretrain: stages add up to {total} steps but train_steps is {config.train_steps}")


def validate_layout(config: PretrainConfig, world_size: int, num_attention_heads: int,
                    num_query_groups: int, num_layers: int) -> int:
    """Check the parallel layout against the world and the model; returns data parallel size."""
    tp, pp = config.parallel.tensor, config.parallel.pipeline
    if world_size % (tp * pp):
        raise ConfigError(f"world size {world_size} is not divisible by tensor × pipeline = {tp} × {pp}")
    if num_attention_heads % tp:
        raise ConfigError(f"pretrain.parallel.tensor={tp} does not divide the {num_attention_heads} attention heads")
    if num_query_groups % tp:
        raise ConfigError(f"pretrain.parallel.tensor={tp} does not divide the {num_query_groups} key/value heads")
    if num_layers % pp:
        raise ConfigError(f"pretrain.parallel.pipeline={pp} does not divide the {num_layers} layers")
    dp = world_size // (tp * pp)
    per_step = config.micro_batch_size * dp
    if config.global_batch_size % per_step:
        raise ConfigError(
            f"pretrain.global_batch_size={config.global_batch_size} is not divisible by "
            f"micro_batch_size × data_parallel = {config.micro_batch_size} × {dp}"
        )
    return dp


def resolve_stages(config: PretrainConfig) -> list[StageConfig]:
    """The stages with steps filled in (a plain run is one stage that trains everything)."""
    if config.stages:
        return list(config.stages)
    if config.train_steps is not None:
        steps = config.train_steps
    else:
        steps = math.ceil(config.train_tokens / (config.global_batch_size * config.seq_length))
    return [StageConfig(name="full", steps=steps, trainable="all")]


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)
