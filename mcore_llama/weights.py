"""Loading weights into this rank's stage of a Llama GPTModel: from Hugging Face safetensors or
from a Megatron dist checkpoint, at any tensor/pipeline-parallel layout.

HF -> Megatron: for every ShardedTensor of the model's sharded state dict (TP offsets, PP layer
numbers, the fused [gate; up] split) the mapping table (`mcore_llama.mapping`) says which HF rows
and columns make it, and `safe_open(...).get_slice` reads just those: each rank reads only its
own slices. Megatron -> model: `dist_checkpointing.load` in place (factories applied first, so
even the fused rows load straight into the parameter: no second copy of the model).
"""

from __future__ import annotations

from pathlib import Path

import torch

from mcore_llama.hf_checkpoint import HFCheckpoint
from mcore_llama.families import parameter_table_of, shape_from_hf_config
from mcore_llama.mapping import Param, hf_row_counts, megatron_rows, table_by_megatron_name
from mcore_llama.run_dir import is_checkpoint
from mcore_llama.shape import LlamaShape
from stagekit.errors import BadInput

EMBEDDING_KEY = "embedding.word_embeddings.weight"


def shape_from_hf(hf: HFCheckpoint) -> LlamaShape:
    try:
        shape = shape_from_hf_config(hf.config)
    except KeyError as exc:
        raise BadInput(f"{hf.path / 'config.json'}: missing key {exc}") from None
    except ValueError as exc:
        raise BadInput(f"{hf.path / 'config.json'}: {exc}") from None
    return shape


def check_hf_shapes(hf: HFCheckpoint, shape: LlamaShape, table: list[Param]) -> torch.dtype:
    """Every HF tensor the table needs exists with the shape the config implies; returns dtype."""
    h = shape.hidden_size
    in_features = {"o_proj": shape.num_attention_heads * shape.head_dim, "down_proj": shape.intermediate_size}
    dtypes = set()
    for param in table:
        for name, rows in hf_row_counts(param).items():
            info = hf.info(name)
            cols = next((v for k, v in in_features.items() if f".{k}." in name), h)
            expected = (rows,) if name.endswith(("norm.weight", ".bias")) else (rows, cols)
            if info.shape != expected:
                raise BadInput(
                    f"{hf.path}: {name} has shape {list(info.shape)}, config.json implies {list(expected)}"
                )
            dtypes.add(info.dtype)
    if len(dtypes) != 1:
        raise BadInput(f"{hf.path}: mixed weight dtypes {sorted(map(str, dtypes))}")
    return dtypes.pop()


def _flat_sharded_tensors(sharded_state_dict):
    """All ShardedTensors (factories applied) of a (nested) sharded state dict."""
    from megatron.core.dist_checkpointing.dict_utils import nested_values
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

    return [v for v in nested_values(sharded_state_dict) if isinstance(v, ShardedTensor)]


def _locate(sh_ten) -> tuple[str, int, int, tuple[slice, ...]]:
    """(per-layer Megatron name, first row, end row, column slices) of a ShardedTensor.

    Megatron-Core stores transformer layers stacked: key `decoder.layers.<name>` with one
    prepended axis whose offset is the global layer number (so PP stages agree on it), and with
    the TransformerEngine spelling of the norms (`linear_qkv.layer_norm_weight`).
    """
    if sh_ten.flattened_range is not None or sh_ten.prepend_axis_num > 1:
        raise ValueError(f"{sh_ten.key}: unsupported sharding (flattened range / nested stacking)")
    name = sh_ten.key
    offsets = sh_ten.global_offset
    if sh_ten.prepend_axis_num == 1:
        stack, _, rest = name.rpartition("layers.")
        name = f"{stack}layers.{offsets[0]}.{rest}"
        offsets = offsets[1:]
    local = sh_ten.local_shape
    cols = tuple(slice(o, o + n) for o, n in zip(offsets[1:], local[1:]))
    return name, offsets[0], offsets[0] + local[0], cols


@torch.no_grad()
def load_hf_into_megatron(model, hf_dir: str | Path | HFCheckpoint, shape: LlamaShape | None = None, table_fn=None) -> int:
    """Fill this rank's GPTModel stage (any TP/PP) from a HF Llama directory.

    Each rank reads only its own slices: for every ShardedTensor of the model's sharded state
    dict (TP offsets, PP layer numbers, the [gate; up] split) the table says which HF rows and
    columns make it, and `safe_open(...).get_slice` reads just those. Returns the number of
    parameters filled. `table_fn` is the mapping (default the shape's family's; replaceable only
    to show a wrong one fails).
    """
    from megatron.core.dist_checkpointing.mapping import apply_factories

    hf = hf_dir if isinstance(hf_dir, HFCheckpoint) else HFCheckpoint(hf_dir)
    shape = shape or shape_from_hf(hf)
    sharded = model.sharded_state_dict()
    apply_factories(sharded)
    tensors = _flat_sharded_tensors(sharded)
    padded = next((t.global_shape[0] for t in tensors if t.key in (EMBEDDING_KEY, "output_layer.weight")), None)
    if padded is None:  # a stage without embedding or output layer
        padded = shape.vocab_size
    table = (table_fn or parameter_table_of)(shape, padded)
    check_hf_shapes(hf, shape, table)
    by_name = table_by_megatron_name(table)
    filled = set()
    for sh_ten in tensors:
        name, start, stop, cols = _locate(sh_ten)
        param = by_name.get(name)
        if param is None:
            raise BadInput(f"Megatron parameter {name} has no entry in the HF mapping table")
        rows = sh_ten.global_shape[sh_ten.prepend_axis_num]
        if param.num_rows != rows:
            raise BadInput(f"{name}: model has {rows} rows, the mapping {param.num_rows}")
        data = sh_ten.data
        part = megatron_rows(
            param,
            hf.read_rows,
            start,
            stop,
            cols,
            zeros_like=lambda n: torch.zeros((n, *data.shape[1:]), dtype=data.dtype),
        )
        data.copy_(part)
        filled.add(id(data))
    return len(filled)


@torch.no_grad()
def load_megatron_checkpoint_into(model, ckpt_dir: str | Path) -> None:
    """Load this rank's GPTModel stage (any TP/PP) from a dist checkpoint, in place.

    Works on a checkpoint written by `convert --to megatron` and on training checkpoints that
    hold the model's sharded state dict (optimizer keys are ignored). Factories (the fused
    [gate; up] split) are applied first so every tensor is read straight into the parameter:
    no second copy of the model.
    """
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.mapping import apply_factories

    ckpt_dir = Path(ckpt_dir)
    if not is_checkpoint(ckpt_dir):
        raise BadInput(f"{ckpt_dir}: no metadata.json (not a Megatron dist checkpoint)")
    sharded = model.sharded_state_dict()
    apply_factories(sharded)
    targets = {k: v for k, v in sharded.items()}
    loaded = dist_checkpointing.load(sharded, str(ckpt_dir))
    extra = {}
    for key, value in loaded.items():
        if isinstance(value, torch.Tensor):
            target = targets[key].data
            if value.data_ptr() != target.data_ptr():
                target.copy_(value)
        elif isinstance(value, list):  # factory parts, each loaded into its view of the param
            for part, sh_ten in zip(value, targets[key]):
                if part.data_ptr() != sh_ten.data.data_ptr():
                    sh_ten.data.copy_(part)
        else:
            extra[key] = value
    if extra:  # TransformerEngine extra state (FP8 metadata); none with the local spec
        model.load_state_dict(extra, strict=False)


def stored_vocab_rows(ckpt_dir: str | Path) -> int:
    """Rows of the embedding as stored in the dist checkpoint (its own padding, any TP)."""
    from torch.distributed.checkpoint import FileSystemReader

    metadata = FileSystemReader(str(ckpt_dir)).read_metadata()
    entry = metadata.state_dict_metadata.get(EMBEDDING_KEY)
    if entry is None:
        raise BadInput(f"{ckpt_dir}: no {EMBEDDING_KEY} in the checkpoint")
    return int(entry.size[0])
