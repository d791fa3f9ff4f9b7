"""The `checkpoints:` section of a run config: what `kocpt checkpoints resize` and `convert` read.

    checkpoints:
      resize: {init: fvt, lm_head: mean, pad_to_multiple: 1, seed: 0, max_shard_size_mb: 2048,
               untie: false, calibration_text: null, calibration_tokens: 16384, calibration_prior_std: 1.0,
               input_rows: init, distillation_tokens: 8192, distillation_epochs: 2, distillation_lr: 0.001}
      convert: {make_vocab_size_divisible_by: 128, max_shard_size_mb: 2048}

Each command takes `--config FILE` and `--set checkpoints.resize.init=mean`; its flags win.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from checkpoints.vocab_init import INIT_METHODS, INPUT_ROW_METHODS, LM_HEAD_METHODS
from stagekit.config import load_section


@dataclass(frozen=True)
class ResizeSection:
    init: str = "fvt"  # new-row initialization: one of INIT_METHODS
    lm_head: str = "mean"  # new LM-head rows: the pieces' mean, the first piece's (EEVE), or mean + a fitted shift
    pad_to_multiple: int = 1  # pad the vocabulary to a multiple of this
    seed: int = 0  # for init: random
    max_shard_size_mb: int = 2048
    untie: bool = False  # a tied base gets an LM head of its own (lm_head: calibrated, input_rows: distilled imply it)
    # The text the fitted starts read (lm_head: calibrated, input_rows: distilled): one document per line, JSONL or
    # a corpus output; not the evaluation text.
    calibration_text: str | None = None
    calibration_tokens: int = 16384  # positions of it the LM-head shifts are fitted on
    calibration_prior_std: float = 1.0  # σ of the Gaussian prior on each shift (logit units)
    input_rows: str = "init"  # new input rows: init's, or distilled from the base tokenization (token_distillation.py)
    distillation_tokens: int = 8192  # merged-tokenizer positions of calibration_text the distillation reads
    distillation_epochs: int = 2  # passes over them
    distillation_lr: float = 1e-3  # Adam's peak rate for the new input rows (SmolLM2: 1e-2 fit better and trained worse)

    def validate(self) -> None:
        if self.init not in INIT_METHODS:
            raise ValueError(f"resize.init {self.init!r}: expected one of {', '.join(INIT_METHODS)}")
        if self.lm_head not in LM_HEAD_METHODS:
            raise ValueError(f"resize.lm_head {self.lm_head!r}: expected one of {', '.join(LM_HEAD_METHODS)}")
        if self.input_rows not in INPUT_ROW_METHODS:
            raise ValueError(f"resize.input_rows {self.input_rows!r}: expected one of {', '.join(INPUT_ROW_METHODS)}")
        fitted = [f"resize.{key} {value}" for key, value in (("lm_head", self.lm_head), ("input_rows", self.input_rows))
                  if value in ("calibrated", "distilled")]
        if fitted and not self.calibration_text:
            raise ValueError(f"{' and '.join(fitted)} needs resize.calibration_text (--calibration-text FILE)")
        if self.calibration_text and not fitted:
            raise ValueError("resize.calibration_text is read only with resize.lm_head calibrated or resize.input_rows "
                             f"distilled, not lm_head {self.lm_head!r} and input_rows {self.input_rows!r}")
        for key in ("distillation_tokens", "distillation_epochs"):
            if getattr(self, key) < 1:
                raise ValueError(f"resize.{key} must be >= 1, got {getattr(self, key)}")
        if not self.distillation_lr > 0:
            raise ValueError(f"resize.distillation_lr must be > 0, got {self.distillation_lr}")
        if self.calibration_tokens < 1:
            raise ValueError(f"resize.calibration_tokens must be >= 1, got {self.calibration_tokens}")
        if not self.calibration_prior_std > 0:
            raise ValueError(f"resize.calibration_prior_std must be > 0, got {self.calibration_prior_std}")
        if self.pad_to_multiple < 1:
            raise ValueError(f"resize.pad_to_multiple must be >= 1, got {self.pad_to_multiple}")
        if self.max_shard_size_mb < 1:
            raise ValueError(f"resize.max_shard_size_mb must be >= 1, got {self.max_shard_size_mb}")


@dataclass(frozen=True)
class ConvertSection:
    make_vocab_size_divisible_by: int = 128  # --to megatron: stored vocabulary padding (TP pads more on load)
    max_shard_size_mb: int = 2048  # --to hf: safetensors shard size

    def validate(self) -> None:
        if self.make_vocab_size_divisible_by < 1:
            raise ValueError(f"convert.make_vocab_size_divisible_by must be >= 1, got {self.make_vocab_size_divisible_by}")
        if self.max_shard_size_mb < 1:
            raise ValueError(f"convert.max_shard_size_mb must be >= 1, got {self.max_shard_size_mb}")


@dataclass(frozen=True)
class CheckpointsConfig:
    resize: ResizeSection = field(default_factory=ResizeSection)
    convert: ConvertSection = field(default_factory=ConvertSection)

    def validate(self) -> None:
        self.resize.validate()
        self.convert.validate()


def load_checkpoints_config(path=None, overrides=(), flags: dict | None = None) -> CheckpointsConfig:
    """The typed `checkpoints:` section; `flags` use dotted keys (`{"resize.init": "mean"}`)."""
    return load_section(CheckpointsConfig, "checkpoints", path, overrides, flags)
