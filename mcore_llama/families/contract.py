"""What every model family says about itself (torchtitan-style: one file per family, this contract).

A family is a Llama-shaped decoder (RMSNorm, SwiGLU, RoPE, GQA) whose Hugging Face spelling and
few Megatron switches differ: its `model_type` and class, how its config.json reads into a
`LlamaShape` and back, its HF ⇄ Megatron parameter table, its Megatron arguments (qkv bias), its
embedding and LM-head tensor names, and llama.cpp's name for it. Stages ask the family and never
compare `model_type` themselves (tests/unit/test_layout_families.py checks that).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mcore_llama.mapping import Param
from mcore_llama.shape import LlamaShape


@dataclass(frozen=True)
class ModelFamily:
    name: str  # LlamaShape.family
    model_type: str  # config.json's model_type
    hf_architecture: str  # config.json's architectures[0]: the transformers class
    gguf_arch: str  # llama.cpp's general.architecture for it
    shape_from_hf_config: Callable[[dict], LlamaShape]  # raises ValueError / KeyError on a config it cannot hold
    hf_config: Callable[..., dict]  # (shape, base config or None, dtype name) -> config.json
    parameter_table: Callable[[LlamaShape, int | None], list[Param]]  # (shape, padded rows) -> the table
    qkv_bias: bool = False
    # Its released checkpoints carry more embedding rows than tokenizer ids (Qwen2.5: 151,936 rows,
    # 151,665 ids); the rows past the ids are reached by no token.
    rows_may_exceed_ids: bool = False
    embedding_name: str = "model.embed_tokens.weight"
    lm_head_name: str = "lm_head.weight"

    def megatron_config_args(self) -> dict:
        """TransformerConfig arguments that differ between families."""
        return {"add_qkv_bias": self.qkv_bias}

    def hf_model_class(self):
        """The transformers class that loads this family's directories."""
        import transformers

        return getattr(transformers, self.hf_architecture)
