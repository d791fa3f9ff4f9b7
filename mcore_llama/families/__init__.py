"""Model families: each a file with the same contract (`contract.ModelFamily`), found from a Hugging
Face config.json (`family_of_hf_config`) or from a shape (`family_of`). Adding a family is one file
here plus its entry in FAMILIES."""

from __future__ import annotations

import json
from pathlib import Path

from mcore_llama.families.contract import ModelFamily
from mcore_llama.families.llama import LLAMA
from mcore_llama.families.qwen2 import QWEN2
from mcore_llama.shape import LlamaShape

FAMILIES: tuple[ModelFamily, ...] = (LLAMA, QWEN2)


def family_of_hf_config(config: dict) -> ModelFamily:
    """The family of a config.json dict; ValueError naming the model_type otherwise."""
    model_type = config.get("model_type")
    for family in FAMILIES:
        if family.model_type == model_type:
            return family
    known = ", ".join(f.model_type for f in FAMILIES)
    raise ValueError(f"model_type {model_type!r} is not a family this project handles ({known})")


def family_of(shape: LlamaShape) -> ModelFamily:
    for family in FAMILIES:
        if family.name == shape.family:
            return family
    raise ValueError(f"unknown model family {shape.family!r}")


def shape_from_hf_config(config: dict) -> LlamaShape:
    return family_of_hf_config(config).shape_from_hf_config(config)


def read_hf_config(path: str | Path) -> dict:
    config_path = Path(path) / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{path}: no config.json (not a Hugging Face model directory)")
    return json.loads(config_path.read_text())


def shape_from_hf_dir(path: str | Path) -> LlamaShape:
    return shape_from_hf_config(read_hf_config(path))


def hf_config_of(shape: LlamaShape, base: dict | None = None, dtype_name: str = "float32") -> dict:
    return family_of(shape).hf_config(shape, base, dtype_name)


def parameter_table_of(shape: LlamaShape, padded_vocab_size: int | None = None):
    return family_of(shape).parameter_table(shape, padded_vocab_size)
