"""Megatron-Core GPTModel with Llama-2 settings, built from a Hugging Face Llama config.

One typed `LlamaShape` describes the architecture; `transformer_config()` turns it into Megatron's
TransformerConfig (RMSNorm, SwiGLU, RoPE, no biases, GQA, untied embeddings) and
`build_gpt_model()` instantiates the stage of it that this rank holds. Both the checkpoint
converter and the training loop build models here, so they always agree on names and shapes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LlamaShape:
    """The architecture of a Llama model (what HF's LlamaConfig holds and Megatron needs)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int = 4096
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def validate(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} is not divisible by "
                f"num_key_value_heads {self.num_key_value_heads}"
            )

    @classmethod
    def from_hf_config(cls, config: dict) -> "LlamaShape":
        """From a HF Llama `config.json` dict (or `LlamaConfig.to_dict()`)."""
        model_type = config.get("model_type")
        if model_type != "llama":
            raise ValueError(f"not a Llama config (model_type={model_type!r})")
        rope = config.get("rope_parameters") or {}
        shape = cls(
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
        )
        shape.validate()
        return shape

    @classmethod
    def from_hf_dir(cls, path: str | Path) -> "LlamaShape":
        config_path = Path(path) / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"{path}: no config.json (not a Hugging Face model directory)")
        return cls.from_hf_config(json.loads(config_path.read_text()))

    def to_dict(self) -> dict:
        return asdict(self)


def padded_vocab_size(vocab_size: int, tensor_parallel: int, divisible_by: int = 128) -> int:
    """Megatron's rule: pad the vocabulary to a multiple of `divisible_by × TP`."""
    multiple = divisible_by * tensor_parallel
    return -(-vocab_size // multiple) * multiple


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
        add_qkv_bias=False,
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
        # Fused kernels need CUDA; on GPUs they are Megatron's defaults.
        gradient_accumulation_fusion=not on_cpu,
        apply_rope_fusion=False,
        persist_layer_norm=not on_cpu,
        masked_softmax_fusion=not on_cpu,
        bias_activation_fusion=False,
        bias_dropout_fusion=False,
        cross_entropy_loss_fusion=not on_cpu,
        recompute_granularity="full" if recompute else None,
        recompute_method="uniform" if recompute else None,
        recompute_num_layers=1 if recompute else None,
    )


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
    return GPTModel(
        config=config,
        transformer_layer_spec=layer_spec(use_transformer_engine),
        vocab_size=padded_vocab_size(shape.vocab_size, tensor_parallel, make_vocab_size_divisible_by),
        max_sequence_length=shape.max_position_embeddings,
        pre_process=parallel_state.is_pipeline_first_stage(),
        post_process=parallel_state.is_pipeline_last_stage(),
        share_embeddings_and_output_weights=shape.tie_word_embeddings,
        position_embedding_type="rope",
        rotary_base=int(shape.rope_theta),
        rotary_percent=1.0,
    )


def causal_attention_mask(seq_length: int, device=None) -> torch.Tensor:
    """[1, 1, s, s] boolean mask, True where attention is *not* allowed (Megatron convention).

    The local layer spec on CPU needs it explicitly (no fused causal kernel there).
    """
    return torch.triu(torch.ones(seq_length, seq_length, dtype=torch.bool, device=device), 1)[None, None]
