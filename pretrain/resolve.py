"""Resolve a training run before any process exists: tokenizer, model shape, parallel layout,
data blend, stages, where to start (resume, another run, the initial weights) and precision.

Everything that can be checked without GPUs or a process group is checked here, so a bad run
costs one line on stderr, not a queue slot. The tensor/pipeline/data-parallel sizes are resolved
once (`ParallelLayout`) and carried by the `TrainingRun`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import yaml

from mcore_llama.hf_checkpoint import resized_base_rows
from mcore_llama.run_dir import is_checkpoint, latest_checkpoint, read_model_metadata, resolve_checkpoint
from mcore_llama.families import shape_from_hf_dir
from mcore_llama.shape import LlamaShape, padded_vocab_size
from pretrain.config import (
    ConfigError,
    RunConfig,
    StageConfig,
    init_source,
    resolve_stages,
    to_dict,
    validate_layout,
    world_size_from_env,
)
from stagekit.errors import BadInput
from stagekit.outputs import refuse_overlap
from tokenizer.model_match import check_matches_fingerprint, check_same_pieces, has_tokenizer
from tokenizer.token_encoder import TokenEncoder


@dataclass(frozen=True)
class ParallelLayout:
    """Tensor × pipeline × data parallel sizes of this run (world size = their product)."""

    tensor: int
    pipeline: int
    data: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainingRun:
    """Everything resolved from the config before any process group exists."""

    settings: RunConfig
    shape: LlamaShape
    padded_vocab_size: int
    encoder: TokenEncoder
    blend: list
    stages: list[StageConfig]
    world_size: int
    layout: ParallelLayout
    init_kind: str
    init_path: str | None
    resume_from: Path | None
    params_dtype: torch.dtype
    stage_ends: list[int] = field(default_factory=list)
    base_vocab_size: int | None = None  # rows a new-rows-only stage freezes (see base_vocab_size below)

    @property
    def config(self):
        return self.settings.pretrain

    @property
    def model_section(self):
        return self.settings.model

    @property
    def num_microbatches(self) -> int:
        return self.config.global_batch_size // (self.config.micro_batch_size * self.layout.data)

    @property
    def train_steps(self) -> int:
        return self.stage_ends[-1]


def model_source(settings: RunConfig, init_kind: str, init_path: str | None, vocab_size: Callable[[], int]):
    """(shape, padded rows stored, where) from the initial weights, or the `model:` section with
    `vocab_size()` rows. Training and `kocpt plan` both take the shape from here."""
    if init_kind == "hf":
        try:
            return shape_from_hf_dir(init_path), None, init_path
        except (FileNotFoundError, ValueError, KeyError) as exc:
            raise ConfigError(f"pretrain.init.hf: {exc}") from None
    if init_kind == "megatron_checkpoint":
        if not is_checkpoint(init_path):
            raise ConfigError(f"pretrain.init.megatron_checkpoint: {init_path} is not a Megatron dist checkpoint")
        try:
            meta = read_model_metadata(init_path)
        except ValueError as exc:
            raise ConfigError(f"pretrain.init.megatron_checkpoint: {exc}") from None
        return meta.shape, meta.padded_vocab_size, init_path
    try:
        shape = LlamaShape.from_model_section(settings.model, vocab_size())
    except ValueError as exc:
        raise ConfigError(f"model: {exc}") from None
    return shape, None, "model section"


# Megatron's scheduler keys, as the config names them
_SCHEDULE_KEYS = {"max_lr": "lr", "min_lr": "min_lr", "lr_warmup_steps": "warmup_steps", "lr_decay_steps": "steps",
                  "lr_decay_style": "decay_style", "start_wd": "weight_decay", "end_wd": "weight_decay",
                  "wd_incr_steps": "steps", "wd_incr_style": "weight decay style"}


def _refuse_changed_schedule(config, stages, ends: list[int], resume_from: Path) -> None:
    """A checkpoint taken inside a stage carries that stage's lr schedule; resuming it with another
    (a longer run, a new lr) is refused until checkpoint.resume_schedule says which one wins."""
    from pretrain.checkpointing import load_common

    try:
        common = load_common(resume_from)
        step, stage_index, stored = common["train_state"]["step"], common["train_state"]["stage"], common["scheduler"]
    except Exception as exc:  # noqa: BLE001 - any unreadable common state is the same one-line refusal
        raise ConfigError(f"pretrain.checkpoint: {resume_from}: cannot read its training state ({exc})") from None
    index = next((k for k, end in enumerate(ends) if step < end), None)
    if index is None or index != stage_index:
        return  # finished, or a new stage starts with its own schedule
    expected = stages[index].scheduler_settings(config.optimizer)
    changed = {}
    for key, value in expected.items():
        if key in stored and stored[key] != value:
            changed.setdefault(_SCHEDULE_KEYS[key], f"{stored[key]} -> {value}")
    if changed:
        raise ConfigError(
            f"{resume_from}: stage {index} ({stages[index].name}) would resume at step {step} with another lr schedule "
            f"than its checkpoint's ({', '.join(f'{k} {v}' for k, v in changed.items())}); set "
            f"pretrain.checkpoint.resume_schedule=config to use this config's from step {step}, or =checkpoint to keep the checkpoint's"
        )


def _check_tokenizer_is_the_models(tokenizer, init_kind: str, init_path, resume_from) -> None:
    """Same rows is not enough: the tokenizer's pieces must be those the model was made with."""
    try:
        if resume_from is not None:
            check_matches_fingerprint(tokenizer, read_model_metadata(resume_from).tokenizer, model=resume_from)
        elif init_kind == "megatron_checkpoint":
            check_matches_fingerprint(tokenizer, read_model_metadata(init_path).tokenizer, model=init_path)
        elif init_kind == "hf" and has_tokenizer(init_path):
            check_same_pieces(tokenizer, init_path, model=init_path)
    except BadInput as exc:
        raise ConfigError(f"pretrain.tokenizer: {exc}") from None


def resolve_training_run(settings: RunConfig, world_size: int | None = None) -> TrainingRun:
    """All checks that need no process group. Raises ConfigError with a one-line message."""
    from pretrain.data import expand_blend

    config = settings.pretrain
    world_size = world_size or world_size_from_env()
    try:
        encoder = TokenEncoder.load(config.tokenizer)
    except BadInput as exc:
        raise ConfigError(f"pretrain.tokenizer: {exc}") from None
    init_kind, init_path = init_source(config)
    if init_path is not None and not Path(init_path).exists():
        raise ConfigError(f"pretrain.init.{init_kind}: {init_path} does not exist")
    shape, stored_padded, where = model_source(settings, init_kind, init_path, lambda: encoder.vocab_size)

    # A run directory that already has checkpoints fixes the model: resume it.
    run_dir = Path(config.checkpoint.dir)
    try:
        refuse_overlap(run_dir, {"pretrain.tokenizer": config.tokenizer, "pretrain.init": init_path,
                                 "pretrain.data": [entry.path for entry in config.data.blend]},
                       output_flag="pretrain.checkpoint.dir")
    except BadInput as exc:
        raise ConfigError(str(exc)) from None
    try:
        resume_from = latest_checkpoint(run_dir)
        if resume_from is None and config.checkpoint.load:
            resume_from = resolve_checkpoint(config.checkpoint.load)
        if resume_from is not None and not is_checkpoint(resume_from):
            raise BadInput(f"{resume_from} is not a complete checkpoint (no metadata.json)")
    except BadInput as exc:
        raise ConfigError(f"pretrain.checkpoint: {exc}") from None
    resumed = None
    if resume_from is not None:
        try:
            meta = resumed = read_model_metadata(resume_from)
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
    _check_tokenizer_is_the_models(encoder, init_kind, init_path, resume_from)
    base_rows = base_vocab_size(settings, init_kind, init_path, resumed)
    if base_rows is not None and base_rows > shape.vocab_size:
        raise ConfigError(f"model.base_vocab_size {base_rows} > vocabulary {shape.vocab_size}")
    for index, stage in enumerate(config.stages):
        if stage.new_rows_only and base_rows is None:
            raise ConfigError(f"pretrain.stages.{index}.new_rows_only: needs the rows of the base vocabulary: init from "
                              "a model `kocpt checkpoints resize` wrote (its resize_report.json), or set model.base_vocab_size")
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
    layout = ParallelLayout(tensor=tp, pipeline=config.parallel.pipeline, data=dp)

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
        warmup = stage.schedule(config.optimizer)[2]
        if warmup >= stage.steps:
            raise ConfigError(f"pretrain stage {index} ({stage.name}): warmup_steps {warmup} must be < its {stage.steps} steps")
        total += stage.steps
        ends.append(total)
    if resume_from is not None and config.checkpoint.resume_schedule == "refuse":
        _refuse_changed_schedule(config, stages, ends, resume_from)
    on_gpu = torch.cuda.is_available()
    precision = config.precision if config.precision != "auto" else ("bf16" if on_gpu else "fp32")
    if precision == "bf16" and not on_gpu:
        raise ConfigError("pretrain.precision: bf16 needs GPUs (CPU runs use fp32)")
    return TrainingRun(
        settings=settings, shape=shape, padded_vocab_size=padded, encoder=encoder, blend=blend, stages=stages,
        world_size=world_size, layout=layout, init_kind=init_kind, init_path=init_path,
        resume_from=resume_from, params_dtype=torch.bfloat16 if precision == "bf16" else torch.float32,
        stage_ends=ends, base_vocab_size=base_rows,
    )


def base_vocab_size(settings: RunConfig, init_kind: str, init_path: str | None, resumed) -> int | None:
    """The rows the model kept from its base, as its artifacts say (the resume checkpoint's or the init's
    metadata, an HF init's resize_report.json); `model.base_vocab_size`, when set, must agree with them."""
    try:
        if resumed is not None:
            found, where = resumed.base_vocab_size, "the checkpoint resumed"
        elif init_kind == "hf":
            found, where = resized_base_rows(init_path), f"pretrain.init.hf ({init_path}/resize_report.json)"
        elif init_kind == "megatron_checkpoint":
            found, where = read_model_metadata(init_path).base_vocab_size, f"pretrain.init.megatron_checkpoint ({init_path})"
        else:
            found, where = None, ""
    except BadInput as exc:
        raise ConfigError(f"pretrain.init: {exc}") from None
    typed = settings.model.base_vocab_size
    if typed is not None and found is not None and typed != found:
        raise ConfigError(f"model.base_vocab_size {typed}, but {where} kept {found} rows of its base model: "
                          "drop the key (it is read from the model) or fix it")
    return typed if typed is not None else found


def describe(run: TrainingRun) -> str:
    from pretrain.flops import flops_per_token, parameter_counts

    config = run.config
    params = parameter_counts(run.shape, run.padded_vocab_size)["total"]
    tokens_per_step = config.global_batch_size * config.seq_length
    lines = [
        "resolved config:",
        yaml.safe_dump({"pretrain": to_dict(config), "model": to_dict(run.model_section)}, sort_keys=False).rstrip(),
        "derived:",
        f"  world_size={run.world_size} tensor={run.layout.tensor} pipeline={run.layout.pipeline} "
        f"data={run.layout.data} micro_batches_per_step={run.num_microbatches}",
        f"  model: {run.shape.num_hidden_layers} layers, hidden {run.shape.hidden_size}, "
        f"vocab {run.shape.vocab_size} (padded {run.padded_vocab_size}), {params / 1e6:.2f}M parameters, "
        f"{flops_per_token(run.shape, config.seq_length, run.padded_vocab_size) / 1e9:.3f} GFLOP/token",
        f"  tokens/step={tokens_per_step} steps={run.train_steps} tokens={tokens_per_step * run.train_steps:,} "
        f"stages={[(s.name, s.steps) for s in run.stages]}",
        f"  init={run.init_kind}{'' if run.init_path is None else ':' + run.init_path} "
        f"resume_from={run.resume_from} precision={run.params_dtype} base_vocab_size={run.base_vocab_size}",
    ]
    return "\n".join(lines)
