"""The Hugging Face Llama ⇄ Megatron-Core GPTModel parameter table, used in both directions
(a family's table is this one or grows from it: `mcore_llama.families`).

Every Megatron tensor is described as its rows (dim 0) stacked from row blocks of HF tensors;
all other dims are the same on both sides. That single description covers every reshaping:

- `linear_qkv` = for each query group g: [q heads of g; k head g; v head g] (Megatron's
  `SelfAttention.get_query_key_value_tensors` splits it that way), so GQA models convert;
- `linear_fc1` = [gate; up] (Megatron's SwiGLU takes `chunk(2)` of fc1's output);
- `embedding` / `output_layer` = the HF rows, then zero rows up to the padded vocabulary.

HF → Megatron reads the blocks (or, for a tensor-parallel shard, only the part of each block
inside the shard's row/column range); Megatron → HF cuts the same blocks back out. RoPE needs no
permutation: HF Llama checkpoints and Megatron (rotary_interleaved=False) both rotate halves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mcore_llama.shape import LlamaShape


@dataclass(frozen=True)
class RowBlock:
    """`count` rows of HF tensor `hf_name` starting at `start`; `hf_name=None` is zero padding."""

    hf_name: str | None
    start: int
    count: int


@dataclass(frozen=True)
class Param:
    """One Megatron parameter: its names (local spec first, then TransformerEngine's) and rows."""

    megatron_names: tuple[str, ...]
    rows: tuple[RowBlock, ...]

    @property
    def megatron_name(self) -> str:
        return self.megatron_names[0]

    @property
    def hf_names(self) -> list[str]:
        return list(dict.fromkeys(b.hf_name for b in self.rows if b.hf_name is not None))

    @property
    def num_rows(self) -> int:
        return sum(b.count for b in self.rows)


def _whole(hf_name: str, rows: int) -> tuple[RowBlock, ...]:
    return (RowBlock(hf_name, 0, rows),)


def _vocab_rows(hf_name: str, vocab_size: int, padded_vocab_size: int) -> tuple[RowBlock, ...]:
    if padded_vocab_size < vocab_size:
        raise ValueError(f"padded vocabulary {padded_vocab_size} < vocabulary {vocab_size}")
    blocks = [RowBlock(hf_name, 0, vocab_size)]
    if padded_vocab_size > vocab_size:
        blocks.append(RowBlock(None, 0, padded_vocab_size - vocab_size))
    return tuple(blocks)


def qkv_rows(shape: LlamaShape, prefix: str, kind: str = "weight") -> tuple[RowBlock, ...]:
    """[q_g; k_g; v_g] for every query group g, each head `head_dim` rows (of the weights, or with
    `kind="bias"` of the biases: Megatron's linear_qkv bias is grouped exactly like its weight)."""
    d = shape.head_dim
    heads_per_group = shape.num_attention_heads // shape.num_key_value_heads
    blocks = []
    for g in range(shape.num_key_value_heads):
        blocks.append(RowBlock(f"{prefix}.q_proj.{kind}", g * heads_per_group * d, heads_per_group * d))
        blocks.append(RowBlock(f"{prefix}.k_proj.{kind}", g * d, d))
        blocks.append(RowBlock(f"{prefix}.v_proj.{kind}", g * d, d))
    return tuple(blocks)


def fc1_rows(shape: LlamaShape, prefix: str) -> tuple[RowBlock, ...]:
    """[gate; up]: Megatron's SwiGLU is silu(first half) * second half."""
    i = shape.intermediate_size
    return (RowBlock(f"{prefix}.gate_proj.weight", 0, i), RowBlock(f"{prefix}.up_proj.weight", 0, i))


def parameter_table(shape: LlamaShape, padded_vocab_size: int | None = None) -> list[Param]:
    """The Llama table for a model; `padded_vocab_size` is the Megatron embedding's row count."""
    padded = shape.vocab_size if padded_vocab_size is None else padded_vocab_size
    h = shape.hidden_size
    table = [Param(("embedding.word_embeddings.weight",), _vocab_rows("model.embed_tokens.weight", shape.vocab_size, padded))]
    for n in range(shape.num_hidden_layers):
        hf, mg = f"model.layers.{n}", f"decoder.layers.{n}"
        table += [
            Param(
                (f"{mg}.input_layernorm.weight", f"{mg}.self_attention.linear_qkv.layer_norm_weight"),
                _whole(f"{hf}.input_layernorm.weight", h),
            ),
            Param((f"{mg}.self_attention.linear_qkv.weight",), qkv_rows(shape, f"{hf}.self_attn")),
            Param((f"{mg}.self_attention.linear_proj.weight",), _whole(f"{hf}.self_attn.o_proj.weight", h)),
            Param(
                (f"{mg}.pre_mlp_layernorm.weight", f"{mg}.mlp.linear_fc1.layer_norm_weight"),
                _whole(f"{hf}.post_attention_layernorm.weight", h),
            ),
            Param((f"{mg}.mlp.linear_fc1.weight",), fc1_rows(shape, f"{hf}.mlp")),
            Param((f"{mg}.mlp.linear_fc2.weight",), _whole(f"{hf}.mlp.down_proj.weight", h)),
        ]
    table.append(Param(("decoder.final_layernorm.weight",), _whole("model.norm.weight", h)))
    if not shape.tie_word_embeddings:
        table.append(Param(("output_layer.weight",), _vocab_rows("lm_head.weight", shape.vocab_size, padded)))
    return table


def with_qkv_bias(table: list[Param], shape: LlamaShape) -> list[Param]:
    """The table plus each layer's linear_qkv bias (Qwen2: q/k/v projections carry biases), after its weight."""
    out = []
    for param in table:
        out.append(param)
        name = param.megatron_name
        if name.endswith(".self_attention.linear_qkv.weight"):
            layer = name.split(".")[2]
            out.append(Param((name[: -len("weight")] + "bias",), qkv_rows(shape, f"model.layers.{layer}.self_attn", "bias")))
    return out


def table_by_megatron_name(table: list[Param]) -> dict[str, Param]:
    """Every name (local and TransformerEngine spelling) → its Param."""
    return {name: p for p in table for name in p.megatron_names}


# A reader returns rows [start, stop) of an HF tensor, restricted to `cols` on the other dims.
SliceReader = Callable[[str, int, int, tuple[slice, ...]], torch.Tensor]


def megatron_rows(
    param: Param,
    read: SliceReader,
    row_start: int,
    row_stop: int,
    cols: tuple[slice, ...] = (),
    zeros_like: Callable[[int], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Rows [row_start, row_stop) of the Megatron tensor (restricted to `cols`), read block-wise.

    Only the parts of HF tensors that fall inside the range are read, so a tensor-parallel rank
    reads its own shard and nothing else. `zeros_like(n)` makes n padding rows.
    """
    parts, offset = [], 0
    for block in param.rows:
        lo, hi = max(row_start, offset), min(row_stop, offset + block.count)
        if lo < hi:
            if block.hf_name is None:
                if zeros_like is None:
                    raise ValueError(f"{param.megatron_name}: padding rows need zeros_like")
                parts.append(zeros_like(hi - lo))
            else:
                s = block.start + lo - offset
                parts.append(read(block.hf_name, s, s + hi - lo, cols))
        offset += block.count
    if not parts:
        raise ValueError(f"{param.megatron_name}: empty row range [{row_start}, {row_stop})")
    return parts[0] if len(parts) == 1 else torch.cat(parts, 0)


def hf_tensor(param: Param, hf_name: str, megatron_tensor: torch.Tensor) -> torch.Tensor:
    """HF tensor `hf_name` cut back out of the full Megatron tensor (padding rows dropped).

    A view when the HF tensor is one contiguous block (embeddings, gate, up, o/down proj), a copy
    when it is gathered from several (q, k, v).
    """
    if megatron_tensor.shape[0] != param.num_rows:
        raise ValueError(
            f"{param.megatron_name}: {megatron_tensor.shape[0]} rows, the table expects {param.num_rows}"
        )
    pieces, offset = [], 0
    for block in param.rows:
        if block.hf_name == hf_name:
            pieces.append((block.start, megatron_tensor[offset : offset + block.count]))
        offset += block.count
    if not pieces:
        raise KeyError(f"{hf_name} is not part of {param.megatron_name}")
    pieces.sort(key=lambda p: p[0])
    expected = 0
    for start, rows in pieces:
        if start != expected:
            raise ValueError(f"{param.megatron_name}: rows of {hf_name} do not tile (gap at {expected})")
        expected += rows.shape[0]
    return pieces[0][1] if len(pieces) == 1 else torch.cat([r for _, r in pieces], 0)


def hf_row_counts(param: Param) -> dict[str, int]:
    """Rows of each HF tensor the Param covers (for shape checks)."""
    counts: dict[str, int] = {}
    for b in param.rows:
        if b.hf_name is not None:
            counts[b.hf_name] = counts.get(b.hf_name, 0) + b.count
    return counts
