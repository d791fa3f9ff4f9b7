"""Tiny random Llama-shaped Hugging Face models for tests, the demo and benchmarks.

`tiny_llama_config(...)` gives a LlamaConfig (Llama-2 defaults, tiny sizes; GQA with
`num_key_value_heads` < `num_attention_heads`; Llama-3 traits with `tie_word_embeddings`,
`rope_theta` and `rope_scaling`, or one of the named `LLAMA3_VARIANTS` via `tiny_llama3_config`); `write_tiny_llama(path, config)` writes a
LlamaForCausalLM with random weights as a HF directory (safetensors + config.json +
generation_config.json). Norm weights are randomized too (1 + noise) so that a swapped norm is
visible in the logits; everything is seeded, so the same call writes the same tensors.
"""

from __future__ import annotations

from pathlib import Path

import torch


def tiny_llama_config(
    vocab_size: int = 1000,
    hidden_size: int = 64,
    intermediate_size: int = 176,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int | None = None,
    tie_word_embeddings: bool = False,
    max_position_embeddings: int = 256,
    rope_theta: float = 10000.0,
    rope_scaling: dict | None = None,
    **overrides,
):
    """`rope_scaling`: Llama-3.1's {factor, low_freq_factor, high_freq_factor,
    original_max_position_embeddings} (rope_type llama3), or None for plain RoPE."""
    from transformers import LlamaConfig

    rope_parameters = {"rope_type": "default", "rope_theta": rope_theta}
    if rope_scaling is not None:
        rope_parameters = {"rope_theta": rope_theta, "rope_type": "llama3", **rope_scaling}
    return LlamaConfig(
        rope_parameters=rope_parameters,
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads or num_attention_heads,
        tie_word_embeddings=tie_word_embeddings,
        max_position_embeddings=max_position_embeddings,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
        **overrides,
    )


# Llama-3-family traits at tiny sizes. The scaled RoPE's original context (64) is below the tiny
# models' 256 positions so the scaling changes every band: low frequencies divided by the factor,
# the middle ones interpolated, and a test sequence of 64+ tokens sees all of them.
LLAMA3_VARIANTS: dict[str, dict] = {
    # SmolLM2 / Llama-3.2 1B-like: tied input/output embeddings, 4 query heads sharing 1 KV head.
    "tied-gqa": {"tie_word_embeddings": True, "num_key_value_heads": 1, "rope_theta": 100000.0},
    # Llama-3.1-like: untied, 2 KV heads, theta 500,000, llama3 RoPE scaling.
    "llama3.1": {
        "num_key_value_heads": 2,
        "rope_theta": 500000.0,
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
    },
    # Llama-3.2 1B/3B-like: tied, 1 KV head, and scaling parameters other than Megatron's fixed ones.
    "llama3.2": {
        "tie_word_embeddings": True,
        "num_key_value_heads": 1,
        "rope_theta": 500000.0,
        "rope_scaling": {"factor": 32.0, "low_freq_factor": 2.0, "high_freq_factor": 8.0, "original_max_position_embeddings": 32},
    },
}


def tiny_llama3_config(variant: str, **overrides):
    """The tiny config of a named Llama-3-family variant (`LLAMA3_VARIANTS`)."""
    return tiny_llama_config(**{**LLAMA3_VARIANTS[variant], **overrides})


def write_tiny_llama(
    path: str | Path,
    config=None,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    randomize_norms: bool = True,
    max_shard_size: str | int = "5GB",
) -> Path:
    """Write a random LlamaForCausalLM built from `config` (default: `tiny_llama_config()`)."""
    from transformers import LlamaForCausalLM

    config = config or tiny_llama_config()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    if randomize_norms:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith("norm.weight"):
                    param.add_(0.1 * torch.randn_like(param))
    model = model.to(dtype)
    path = Path(path)
    partial = path.with_name(path.name + ".tmp")  # renamed when complete: never a half-written model
    model.save_pretrained(partial, max_shard_size=max_shard_size)
    partial.rename(path)
    return path
