"""What a Llama-shaped model is: `LlamaShape`, and Megatron's vocabulary padding.

Reading and writing a Hugging Face config is each family's (`mcore_llama.families`): the shape
names its family, and the family says what its config, parameter table and Megatron arguments are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class LlamaShape:
    """The architecture of a Llama-shaped model (what HF's LlamaConfig holds and Megatron needs);
    `family` names its `mcore_llama.families` entry (Qwen2 is a Llama with qkv biases)."""

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
    # Llama-3.1's frequency-dependent RoPE scaling (HF rope_type "llama3"), or None for plain RoPE.
    rope_scaling: dict | None = None
    family: str = "llama"

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
        if self.rope_scaling is not None and self.rope_scaling != llama3_rope_scaling(self.rope_scaling):
            raise ValueError(f"rope_scaling {self.rope_scaling}: not normalized (use llama3_rope_scaling)")

    @classmethod
    def from_model_section(cls, section, vocab_size: int) -> "LlamaShape":
        """From a run config's `model:` section (any object with LlamaConfig's field names; a
        missing `num_key_value_heads` means plain multi-head attention, a missing
        `tie_word_embeddings` / `rope_scaling` untied embeddings and plain RoPE) and the tokenizer's size.
        Training and `kocpt plan` both take the shape from here."""
        shape = cls(
            vocab_size=vocab_size,
            hidden_size=section.hidden_size,
            intermediate_size=section.intermediate_size,
            num_hidden_layers=section.num_hidden_layers,
            num_attention_heads=section.num_attention_heads,
            num_key_value_heads=section.num_key_value_heads or section.num_attention_heads,
            max_position_embeddings=section.max_position_embeddings,
            rope_theta=section.rope_theta,
            rms_norm_eps=section.rms_norm_eps,
            initializer_range=section.initializer_range,
            tie_word_embeddings=getattr(section, "tie_word_embeddings", False),
            rope_scaling=llama3_rope_scaling(_as_dict(getattr(section, "rope_scaling", None))),
        )
        shape.validate()
        return shape

    def to_dict(self) -> dict:
        return asdict(self)


LLAMA3_ROPE_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


def llama3_rope_scaling(rope: dict | None) -> dict | None:
    """The RoPE scaling of a HF `rope_parameters` / `rope_scaling` dict, normalized: None for plain
    RoPE, {rope_type: llama3, factor, low_freq_factor, high_freq_factor,
    original_max_position_embeddings} for Llama-3.1's. Any other kind (linear, dynamic, yarn) is
    refused: Megatron's Llama RotaryEmbedding implements these two only."""
    rope = rope or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind == "default":
        return None
    if kind != "llama3":
        raise ValueError(f"RoPE scaling {kind!r} is not supported (plain RoPE and Llama-3.1's 'llama3' are)")
    missing = [key for key in LLAMA3_ROPE_KEYS if rope.get(key) is None]
    if missing:
        raise ValueError(f"llama3 RoPE scaling without {', '.join(missing)}")
    scaling = {
        "rope_type": "llama3",
        "factor": float(rope["factor"]),
        "low_freq_factor": float(rope["low_freq_factor"]),
        "high_freq_factor": float(rope["high_freq_factor"]),
        "original_max_position_embeddings": int(rope["original_max_position_embeddings"]),
    }
    if scaling["factor"] <= 0 or scaling["high_freq_factor"] <= scaling["low_freq_factor"]:
        raise ValueError(f"llama3 RoPE scaling needs factor > 0 and high_freq_factor > low_freq_factor, got {scaling}")
    return scaling


def _as_dict(section) -> dict | None:
    """A config sub-section (a dataclass instance or a mapping) as a dict."""
    if section is None or isinstance(section, dict):
        return section
    return asdict(section)


def padded_vocab_size(vocab_size: int, tensor_parallel: int, divisible_by: int = 128) -> int:
    """Megatron's rule: pad the vocabulary to a multiple of `divisible_by × TP`."""
    multiple = divisible_by * tensor_parallel
    return -(-vocab_size // multiple) * multiple
