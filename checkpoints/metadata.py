"""`kocpt_model.json`: what a Megatron checkpoint directory needs to rebuild its model.

A dist checkpoint holds tensors only; this file adds the architecture (`LlamaShape`, with the
real, unpadded vocabulary), the dtype, the padded row count stored for the embedding and output
layer, and the source Hugging Face config and generation config, so `convert --to hf` and the
training stage need nothing but the checkpoint directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from checkpoints.errors import BadInput
from checkpoints.hf_io import DTYPE_NAMES, dtype_from_name
from pretrain.model import LlamaShape

METADATA_FILE = "kocpt_model.json"
FORMAT = "kocpt-megatron-model/1"


@dataclass
class ModelMetadata:
    shape: LlamaShape
    dtype: torch.dtype
    padded_vocab_size: int
    hf_config: dict = field(default_factory=dict)
    generation_config: dict | None = None

    def validate(self) -> None:
        self.shape.validate()
        if self.padded_vocab_size < self.shape.vocab_size:
            raise BadInput(f"padded_vocab_size {self.padded_vocab_size} < vocab_size {self.shape.vocab_size}")

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "shape": self.shape.to_dict(),
            "padded_vocab_size": self.padded_vocab_size,
            "dtype": DTYPE_NAMES[self.dtype],
            "hf_config": self.hf_config,
            "generation_config": self.generation_config,
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
