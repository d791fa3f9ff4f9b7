"""The Qwen2 family (Qwen2, Qwen2.5): a Llama with biases on the q/k/v projections, more embedding rows
than tokenizer ids, no BOS token (a tokenizer matter: `tokenize.add_bos=false`), GGUF arch "qwen2".
Sliding-window attention (off in every released Qwen2.5 but the largest) is refused: Megatron's model
here attends over the whole context."""

from __future__ import annotations

from mcore_llama.families.contract import ModelFamily
from mcore_llama.families.llama import llama_body_config, llama_body_fields
from mcore_llama.mapping import parameter_table as llama_table
from mcore_llama.mapping import with_qkv_bias
from mcore_llama.shape import LlamaShape


def shape_from_hf_config(config: dict) -> LlamaShape:
    if config.get("use_sliding_window") or "sliding_attention" in (config.get("layer_types") or []):
        raise ValueError("sliding-window attention is not supported (use_sliding_window must be false)")
    fields = {**llama_body_fields(config), "rms_norm_eps": config.get("rms_norm_eps", 1e-6)}
    shape = LlamaShape(**fields, family=QWEN2.name)
    shape.validate()
    return shape


def hf_config(shape: LlamaShape, base: dict | None = None, dtype_name: str = "float32") -> dict:
    config = llama_body_config(shape, base, dtype_name, QWEN2)
    config.setdefault("use_sliding_window", False)
    return config


def parameter_table(shape: LlamaShape, padded_vocab_size: int | None = None):
    return with_qkv_bias(llama_table(shape, padded_vocab_size), shape)


QWEN2 = ModelFamily(
    name="qwen2",
    model_type="qwen2",
    hf_architecture="Qwen2ForCausalLM",
    gguf_arch="qwen2",
    shape_from_hf_config=shape_from_hf_config,
    hf_config=hf_config,
    parameter_table=parameter_table,
    qkv_bias=True,
    rows_may_exceed_ids=True,
)
