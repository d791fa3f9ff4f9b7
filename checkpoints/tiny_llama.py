"""Tiny random Llama-2-shaped Hugging Face models for tests, the demo and benchmarks.

`tiny_llama_config(...)` gives a LlamaConfig (Llama-2 defaults, tiny sizes; GQA with
`num_key_value_heads` < `num_attention_heads`); `write_tiny_llama(path, config)` writes a
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
    **overrides,
):
    from transformers import LlamaConfig

    return LlamaConfig(
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
