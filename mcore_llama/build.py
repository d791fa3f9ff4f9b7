"""How a Llama is built on Megatron-Core: its TransformerConfig, its layer spec, the GPTModel.

`transformer_config()` turns a `LlamaShape` into Megatron's TransformerConfig (RMSNorm, SwiGLU,
RoPE, GQA, biases only where the family has them (Qwen2's q/k/v); tied embeddings and Llama-3.1's RoPE scaling are GPTModel arguments) and `build_gpt_model()` instantiates the stage of it that this rank holds.
The checkpoint converter, the training loop and the benchmarks build models here, so they always
agree on names and shapes. How it is split over ranks is Megatron's (tensor-parallel layers);
`mcore_llama.runtime.init_model_parallel` sets up the parallel state first.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F

from mcore_llama.families import family_of
from mcore_llama.shape import LlamaShape, padded_vocab_size


def transformer_config(
    shape: LlamaShape,
    *,
    tensor_parallel: int = 1,
    pipeline_parallel: int = 1,
    params_dtype: torch.dtype = torch.float32,
    recompute: bool = False,
    on_cpu: bool | None = None,
    perform_initialization: bool = True,
):
    """Megatron TransformerConfig for a Llama shape. On CPU every fused kernel is off.

    `perform_initialization=False` skips the random init (weights about to be loaded anyway).
    """
    from megatron.core.transformer.transformer_config import TransformerConfig

    on_cpu = (not torch.cuda.is_available()) if on_cpu is None else on_cpu
    bf16 = params_dtype == torch.bfloat16
    return TransformerConfig(
        num_layers=shape.num_hidden_layers,
        hidden_size=shape.hidden_size,
        ffn_hidden_size=shape.intermediate_size,
        num_attention_heads=shape.num_attention_heads,
        num_query_groups=shape.num_key_value_heads,
        kv_channels=shape.head_dim,
        normalization="RMSNorm",
        layernorm_epsilon=shape.rms_norm_eps,
        gated_linear_unit=True,  # SwiGLU: linear_fc1 = [gate; up]
        activation_func=F.silu,
        add_bias_linear=False,
        **family_of(shape).megatron_config_args(),
        hidden_dropout=0.0,
        attention_dropout=0.0,
        init_method_std=shape.initializer_range,
        tensor_model_parallel_size=tensor_parallel,
        pipeline_model_parallel_size=pipeline_parallel,
        sequence_parallel=False,
        params_dtype=params_dtype,
        pipeline_dtype=params_dtype,
        bf16=bf16,
        use_cpu_initialization=on_cpu,
        perform_initialization=perform_initialization,
        # Fused kernels need CUDA and their compiled extensions (Apex / Megatron's fused kernels):
        # Megatron raises at build or first forward when one is asked for but not installed (a
        # GPU node with megatron-core from a wheel has none of them). The persistent-LayerNorm
        # kernel is Apex LayerNorm only: Llama's RMSNorm never uses it, and the local spec's
        # torch RMSNorm refuses the flag.
        gradient_accumulation_fusion=not on_cpu and _have_module("fused_weight_gradient_mlp_cuda"),
        apply_rope_fusion=False,
        persist_layer_norm=False,
        masked_softmax_fusion=not on_cpu
        and _have_module("scaled_masked_softmax_cuda")
        and _have_module("scaled_upper_triang_masked_softmax_cuda"),
        bias_activation_fusion=False,
        bias_dropout_fusion=False,
        cross_entropy_loss_fusion=not on_cpu,
        recompute_granularity="full" if recompute else None,
        recompute_method="uniform" if recompute else None,
        recompute_num_layers=1 if recompute else None,
    )


def _have_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def layer_spec(use_transformer_engine: bool | None = None):
    """TransformerEngine spec when TE and a GPU are present, Megatron's local spec otherwise."""
    from megatron.core.models.gpt.gpt_layer_specs import (
        get_gpt_layer_local_spec,
        get_gpt_layer_with_transformer_engine_spec,
    )

    if use_transformer_engine is None:
        use_transformer_engine = uses_transformer_engine()
    if use_transformer_engine:
        return get_gpt_layer_with_transformer_engine_spec()
    return get_gpt_layer_local_spec(normalization="RMSNorm")


def uses_transformer_engine() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import transformer_engine  # noqa: F401
    except ImportError:
        return False
    return True


def build_gpt_model(
    shape: LlamaShape,
    *,
    tensor_parallel: int = 1,
    pipeline_parallel: int = 1,
    params_dtype: torch.dtype = torch.float32,
    make_vocab_size_divisible_by: int = 128,
    recompute: bool = False,
    use_transformer_engine: bool | None = None,
    perform_initialization: bool = True,
):
    """This rank's stage of the model. Needs `parallel_state.initialize_model_parallel` first."""
    from megatron.core import parallel_state
    from megatron.core.models.gpt import GPTModel

    config = transformer_config(
        shape,
        tensor_parallel=tensor_parallel,
        pipeline_parallel=pipeline_parallel,
        params_dtype=params_dtype,
        recompute=recompute,
        perform_initialization=perform_initialization,
    )
    model = GPTModel(
        config=config,
        transformer_layer_spec=layer_spec(use_transformer_engine),
        vocab_size=padded_vocab_size(shape.vocab_size, tensor_parallel, make_vocab_size_divisible_by),
        max_sequence_length=shape.max_position_embeddings,
        pre_process=parallel_state.is_pipeline_first_stage(),
        post_process=parallel_state.is_pipeline_last_stage(),
        share_embeddings_and_output_weights=shape.tie_word_embeddings,
        position_embedding_type="rope",
        rotary_base=int(shape.rope_theta) if float(shape.rope_theta).is_integer() else shape.rope_theta,
        rotary_percent=1.0,
    )
    if shape.rope_scaling is not None:
        apply_llama3_rope_scaling(model.rotary_pos_emb, shape.rope_scaling)
    return model


def apply_llama3_rope_scaling(rotary_embedding, scaling: dict) -> None:
    """Llama-3.1's RoPE scaling on a built RotaryEmbedding, with all four of its parameters.

    Megatron's `rope_scaling=True` takes only the factor and fixes the rest at Llama-3.1's values
    (low 1, high 4, original context 8192); Llama-3.2 and others differ, so the same formula
    (`RotaryEmbedding._apply_scaling`, adapted from transformers) is applied here with every
    parameter, before any forward pass caches frequencies.
    """
    rotary_embedding.inv_freq = rotary_embedding._apply_scaling(
        rotary_embedding.inv_freq,
        factor=scaling["factor"],
        low_freq_factor=scaling["low_freq_factor"],
        high_freq_factor=scaling["high_freq_factor"],
        original_max_position_embeddings=scaling["original_max_position_embeddings"],
    )


def causal_attention_mask(seq_length: int, device=None) -> torch.Tensor:
    """[1, 1, s, s] boolean mask, True where attention is *not* allowed (Megatron convention).

    The local layer spec on CPU needs it explicitly (no fused causal kernel there).
    """
    return torch.triu(torch.ones(seq_length, seq_length, dtype=torch.bool, device=device), 1)[None, None]
