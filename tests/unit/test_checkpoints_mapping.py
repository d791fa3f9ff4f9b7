"""The HF ⇄ Megatron parameter table and the streaming safetensors writer (no Megatron process)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from checkpoints.hf_io import write_safetensors_shards
from mcore_llama.mapping import hf_tensor, megatron_rows, parameter_table, table_by_megatron_name
from mcore_llama.shape import LlamaShape

GQA = LlamaShape(
    vocab_size=10, hidden_size=8, intermediate_size=6, num_hidden_layers=1,
    num_attention_heads=4, num_key_value_heads=2,
)  # head_dim 2, 2 query heads per group


def _labelled_hf(shape: LlamaShape) -> dict[str, torch.Tensor]:
    """HF tensors whose rows say where they come from: value = 1000*tensor_no + row."""
    tensors = {}
    for k, param in enumerate(parameter_table(shape)):
        for b in param.rows:
            if b.hf_name and b.hf_name not in tensors:
                rows = sum(x.count for x in param.rows if x.hf_name == b.hf_name)
                tensors[b.hf_name] = torch.arange(rows, dtype=torch.float32)[:, None].repeat(1, 3) + 1000 * len(tensors)
    return tensors


def _reader(tensors):
    return lambda name, start, stop, cols: tensors[name][(slice(start, stop), *cols)]


def test_qkv_is_grouped_per_query_group():
    table = table_by_megatron_name(parameter_table(GQA))
    qkv = table["decoder.layers.0.self_attention.linear_qkv.weight"]
    hf = _labelled_hf(GQA)
    q, k, v = (hf[f"model.layers.0.self_attn.{x}_proj.weight"][:, 0] for x in "qkv")
    full = megatron_rows(qkv, _reader(hf), 0, qkv.num_rows)[:, 0]
    # group 0: q heads 0,1 (rows 0-3), k head 0, v head 0; group 1: q heads 2,3, k head 1, v head 1
    expected = torch.cat([q[0:4], k[0:2], v[0:2], q[4:8], k[2:4], v[2:4]])
    assert torch.equal(full, expected)


def test_fc1_is_gate_then_up_and_norms_have_both_spellings():
    table = table_by_megatron_name(parameter_table(GQA))
    fc1 = table["decoder.layers.0.mlp.linear_fc1.weight"]
    assert [b.hf_name for b in fc1.rows] == ["model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight"]
    assert table["decoder.layers.0.input_layernorm.weight"] is table["decoder.layers.0.self_attention.linear_qkv.layer_norm_weight"]
    assert table["decoder.layers.0.pre_mlp_layernorm.weight"] is table["decoder.layers.0.mlp.linear_fc1.layer_norm_weight"]
    assert table["decoder.layers.0.pre_mlp_layernorm.weight"].hf_names == ["model.layers.0.post_attention_layernorm.weight"]


@pytest.mark.parametrize("tied", [False, True])
def test_every_tensor_round_trips_and_shards_read_only_their_rows(tied):
    shape = LlamaShape(**{**GQA.to_dict(), "tie_word_embeddings": tied})
    padded = 16
    table = parameter_table(shape, padded)
    assert ("output_layer.weight" in table_by_megatron_name(table)) is not tied
    hf = _labelled_hf(shape)
    zeros = lambda n: torch.zeros(n, 3)  # noqa: E731
    for param in table:
        full = megatron_rows(param, _reader(hf), 0, param.num_rows, zeros_like=zeros)
        for name in param.hf_names:
            assert torch.equal(hf_tensor(param, name, full), hf[name])
        # Two tensor-parallel shards, read separately, stack to the full tensor.
        half = param.num_rows // 2
        parts = [megatron_rows(param, _reader(hf), a, b, (slice(1, 3),), lambda n: torch.zeros(n, 2)) for a, b in ((0, half), (half, param.num_rows))]
        assert torch.equal(torch.cat(parts), full[:, 1:3])
    embedding = table_by_megatron_name(table)["embedding.word_embeddings.weight"]
    full = megatron_rows(embedding, _reader(hf), 0, padded, zeros_like=zeros)
    assert full.shape[0] == padded and torch.equal(full[10:], torch.zeros(6, 3))


def test_streaming_writer_shards_and_index(tmp_path):
    tensors = {f"t{i}": torch.randn(5, 7).to(torch.bfloat16 if i % 2 else torch.float32) for i in range(5)}
    specs = [(n, tuple(t.shape), t.dtype) for n, t in tensors.items()]
    index = write_safetensors_shards(tmp_path, specs, lambda n: tensors[n], max_shard_bytes=150)
    files = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert len(files) > 1 and files[0].startswith("model-00001-of-")
    assert json.loads((tmp_path / "model.safetensors.index.json").read_text()) == index
    for name, file in index["weight_map"].items():
        with safe_open(tmp_path / file, framework="pt") as f:
            assert torch.equal(f.get_tensor(name), tensors[name])
