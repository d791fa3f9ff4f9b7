"""The checkpoint-directory contract: `kocpt_model.json`, and a run directory's `latest` pointer.

A Megatron checkpoint directory (what `kocpt checkpoints convert --to megatron` writes, and each
`iter_NNNNNNN` of a training run):

    metadata.json, common.pt, __*.distcp   `dist_checkpointing.save(model.sharded_state_dict())`
                                            (torch_dist) of `mcore_llama.build.build_gpt_model`;
                                            keys are the GPTModel's own (local layer spec names),
                                            so it loads at any TP/PP layout.
    kocpt_model.json                        `ModelMetadata` below (in a training run it sits once,
                                            beside the iter_* directories):
      {"format": "kocpt-megatron-model/1",
       "shape": LlamaShape.to_dict()        (vocab_size = the REAL vocabulary, unpadded),
       "padded_vocab_size": int             (rows stored for embedding/output_layer; >= vocab_size),
       "dtype": "bfloat16" | "float32" | "float16",
       "hf_config": {...}                   (the source config.json, to write it back),
       "generation_config": {...} | null}

A training run directory holds `iter_NNNNNNN/` checkpoints and `latest`, a file naming the newest
complete one (written by tmp + rename after the checkpoint is complete). Wherever a checkpoint is
asked for, a run directory stands for its latest checkpoint (`resolve_checkpoint`).

A dist checkpoint holds tensors only; `kocpt_model.json` adds the architecture, the dtype, the
padded row count and the source Hugging Face configs, so `convert --to hf` and the training stage
need nothing but the checkpoint directory. Padding rows (ids >= shape.vocab_size) are zero in the
embedding and the output layer and masked in the logits (`mcore_llama.vocab_padding`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mcore_llama.hf_checkpoint import DTYPE_NAMES, dtype_from_name
from mcore_llama.shape import LlamaShape
from stagekit.errors import BadInput

METADATA_FILE = "kocpt_model.json"
FORMAT = "kocpt-megatron-model/1"
LATEST = "latest"


@dataclass
class ModelMetadata:
    shape: LlamaShape
    dtype: torch.dtype
    padded_vocab_size: int
    hf_config: dict = field(default_factory=dict)
    generation_config: dict | None = None
    # What the model's tokenizer was (ids, a hash of its pieces, BOS/EOS), when the HF directory it came
    # from held one: `convert --to hf --tokenizer` refuses another tokenizer against it.
    tokenizer: dict | None = None
    # Rows copied from the base model by `kocpt checkpoints resize` (its resize_report.json): what a
    # new-rows-only stage freezes. None for a model that was not resized.
    base_vocab_size: int | None = None

    def validate(self) -> None:
        self.shape.validate()
        if self.padded_vocab_size < self.shape.vocab_size:
            raise BadInput(f"padded_vocab_size {self.padded_vocab_size} < vocab_size {self.shape.vocab_size}")
        if self.base_vocab_size is not None and not 0 < self.base_vocab_size <= self.shape.vocab_size:
            raise BadInput(f"base_vocab_size {self.base_vocab_size} outside 1..vocab_size {self.shape.vocab_size}")

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "shape": self.shape.to_dict(),
            "padded_vocab_size": self.padded_vocab_size,
            "dtype": DTYPE_NAMES[self.dtype],
            "hf_config": self.hf_config,
            "generation_config": self.generation_config,
            "tokenizer": self.tokenizer,
            "base_vocab_size": self.base_vocab_size,
        }


def find_metadata_file(ckpt_dir: str | Path) -> Path:
    """`kocpt_model.json` in the checkpoint directory, or in its parent (training runs keep one
    per run beside the `iter_NNNNNNN` directories)."""
    ckpt_dir = Path(ckpt_dir)
    for candidate in (ckpt_dir / METADATA_FILE, ckpt_dir.parent / METADATA_FILE):
        if candidate.is_file():
            return candidate
    raise BadInput(f"{ckpt_dir}: no {METADATA_FILE} (not a checkpoint written by kocpt checkpoints convert)")


def read_model_metadata(ckpt_dir: str | Path) -> ModelMetadata:
    path = find_metadata_file(ckpt_dir)
    try:
        raw = json.loads(path.read_text())
        if raw.get("format") != FORMAT:
            raise BadInput(f"{path}: format {raw.get('format')!r}, expected {FORMAT!r}")
        meta = ModelMetadata(
            shape=LlamaShape(**raw["shape"]),
            dtype=dtype_from_name(raw["dtype"]),
            padded_vocab_size=int(raw["padded_vocab_size"]),
            hf_config=raw.get("hf_config") or {},
            generation_config=raw.get("generation_config"),
            tokenizer=raw.get("tokenizer"),
            base_vocab_size=raw.get("base_vocab_size"),
        )
        meta.validate()
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, BadInput):
            raise
        raise BadInput(f"{path}: malformed ({type(exc).__name__}: {exc})") from None
    return meta


def write_model_metadata(ckpt_dir: str | Path, metadata: ModelMetadata) -> Path:
    metadata.validate()
    path = Path(ckpt_dir) / METADATA_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(metadata.to_dict(), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def is_checkpoint(path: str | Path) -> bool:
    """A Megatron dist checkpoint directory (its own `metadata.json` is written last)."""
    return (Path(path) / "metadata.json").is_file()


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint a run directory's `latest` pointer names; None when it has no pointer.
    A dangling pointer is an error, never a fresh start."""
    pointer = Path(run_dir) / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text().strip()
    target = Path(run_dir) / name
    if not target.is_dir():
        raise BadInput(f"{pointer}: points at {name}, which does not exist")
    return target


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory stands for its latest checkpoint; any other path is returned as it is (the
    reader then says what it lacks: `metadata.json`, `kocpt_model.json`)."""
    path = Path(path)
    if is_checkpoint(path):
        return path
    return latest_checkpoint(path) or path

