"""The Llama family (Llama-2, Llama-3.x, SmolLM2): config.json ⇄ `LlamaShape`, the parameter table as
it is in `mcore_llama.mapping`, no biases, GGUF arch "llama". Other families grow from these functions."""

from __future__ import annotations

from mcore_llama.families.contract import ModelFamily
from mcore_llama.mapping import parameter_table
from mcore_llama.shape import LlamaShape, llama3_rope_scaling


def llama_body_fields(config: dict) -> dict:
    """The `LlamaShape` fields of a Llama-shaped config.json (transformers 4 or 5 spelling)."""
    # transformers 5 writes `rope_parameters` (theta included); 4.x wrote `rope_scaling`.
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    return dict(
        vocab_size=config["vocab_size"],
        hidden_size=config["hidden_size"],
        intermediate_size=config["intermediate_size"],
        num_hidden_layers=config["num_hidden_layers"],
        num_attention_heads=config["num_attention_heads"],
        num_key_value_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
        max_position_embeddings=config.get("max_position_embeddings", 4096),
        rope_theta=float(rope.get("rope_theta", config.get("rope_theta", 10000.0))),
        rms_norm_eps=config.get("rms_norm_eps", 1e-5),
        tie_word_embeddings=config.get("tie_word_embeddings", False),
        initializer_range=config.get("initializer_range", 0.02),
        rope_scaling=llama3_rope_scaling(rope),
    )


def shape_from_hf_config(config: dict) -> LlamaShape:
    shape = LlamaShape(**llama_body_fields(config), family=LLAMA.name)
    shape.validate()
    return shape


def llama_body_config(shape: LlamaShape, base: dict | None, dtype_name: str, family: ModelFamily) -> dict:
    """config.json for a shape: `base` (the source model's config) with this architecture."""
    config = dict(base or {})
    config.update(
        architectures=[family.hf_architecture],
        model_type=family.model_type,
        vocab_size=shape.vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        max_position_embeddings=shape.max_position_embeddings,
        rms_norm_eps=shape.rms_norm_eps,
        tie_word_embeddings=shape.tie_word_embeddings,
        dtype=dtype_name,
    )
    config.pop("torch_dtype", None)
    if "rope_parameters" not in config and "rope_scaling" not in config:
        if shape.rope_scaling is None:
            config["rope_theta"] = shape.rope_theta
        else:
            config["rope_parameters"] = {"rope_theta": shape.rope_theta, **shape.rope_scaling}
    return config


def hf_config(shape: LlamaShape, base: dict | None = None, dtype_name: str = "float32") -> dict:
    return llama_body_config(shape, base, dtype_name, LLAMA)


LLAMA = ModelFamily(
    name="llama",
    model_type="llama",
    hf_architecture="LlamaForCausalLM",
    gguf_arch="llama",
    shape_from_hf_config=shape_from_hf_config,
    hf_config=hf_config,
    parameter_table=parameter_table,
)
