"""Hugging Face Llama ⇄ Megatron-Core GPTModel (dist_checkpointing, torch_dist), any TP/PP.

HF → Megatron builds the model with `pretrain.model.build_gpt_model` (the training stage's own
builder, so names and shapes agree), fills each parameter from safetensors through the mapping
table, and saves the model's own `sharded_state_dict()`: Megatron then handles every layout
question on load (TP splits of `linear_qkv` by query group, of `linear_fc1` as
[gate_shard; up_shard] per rank, PP layer offsets). The checkpoint directory contract (the
`kocpt_model.json` beside the tensors) is documented in `checkpoints/__init__.py`.

Megatron → HF loads the checkpoint in place into a single-process model (whatever TP/PP it was
saved at) and streams each HF tensor out, dropping the vocabulary padding rows.

Memory: the model's parameters are the only full copy. Reads go tensor by tensor (HF side) or in
place (Megatron side: factories are applied before loading, so even the fused [gate; up] rows
are loaded straight into the parameter), and writes go tensor by tensor.

Safety: HF weights are read only from safetensors (pickled *.bin are refused); Megatron reads
the dist checkpoint's tensors through torch DCP and its `common.pt` with `torch.load`, whose
default since torch 2.6 is `weights_only=True` -- a test shows a checkpoint whose pickle would
run code is refused. `trust_remote_code` is never used.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch

from checkpoints.errors import BadInput
from checkpoints.hf_io import (
    DTYPE_NAMES,
    HFCheckpoint,
    atomic_output_dir,
    copy_tokenizer_files,
    peak_rss_bytes,
    write_safetensors_shards,
)
from checkpoints.mapping import (
    Param,
    hf_row_counts,
    hf_tensor,
    megatron_rows,
    parameter_table,
    table_by_megatron_name,
)
from checkpoints.metadata import ModelMetadata, read_model_metadata, write_model_metadata
from pretrain.model import LlamaShape, padded_vocab_size

EMBEDDING_KEY = "embedding.word_embeddings.weight"


# --------------------------------------------------------------------------- shapes and checks


def shape_from_hf(hf: HFCheckpoint) -> LlamaShape:
    try:
        shape = LlamaShape.from_hf_config(hf.config)
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
            expected = (rows,) if name.endswith("norm.weight") else (rows, cols)
            if info.shape != expected:
                raise BadInput(
                    f"{hf.path}: {name} has shape {list(info.shape)}, config.json implies {list(expected)}"
                )
            dtypes.add(info.dtype)
    if len(dtypes) != 1:
        raise BadInput(f"{hf.path}: mixed weight dtypes {sorted(map(str, dtypes))}")
    return dtypes.pop()


# --------------------------------------------------------------------------- Megatron process


@contextlib.contextmanager
def single_process_megatron(seed: int = 1234):
    """A one-rank gloo group and TP=PP=1 model parallel state (reused if already set up)."""
    import torch.distributed as dist
    from megatron.core import parallel_state

    from pretrain.cpu_compat import apply_cpu_shim, cpu_rng_seed

    created_group = False
    if not dist.is_initialized():
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        created_group = True
    on_cpu = apply_cpu_shim()
    created_parallel = False
    if not parallel_state.model_parallel_is_initialized():
        parallel_state.initialize_model_parallel(1, 1)
        created_parallel = True
    if on_cpu:
        cpu_rng_seed(seed)
    else:
        from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

        model_parallel_cuda_manual_seed(seed)
    try:
        yield
    finally:
        if created_parallel:
            parallel_state.destroy_model_parallel()
        if created_group:
            dist.destroy_process_group()


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
def load_hf_into_megatron(model, hf_dir: str | Path | HFCheckpoint, shape: LlamaShape | None = None, table_fn=parameter_table) -> int:
    """Fill this rank's GPTModel stage (any TP/PP) from a HF Llama directory.

    Each rank reads only its own slices: for every ShardedTensor of the model's sharded state
    dict (TP offsets, PP layer numbers, the [gate; up] split) the table says which HF rows and
    columns make it, and `safe_open(...).get_slice` reads just those. Returns the number of
    parameters filled. `table_fn` is the mapping (replaceable only to show a wrong one fails).
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
    table = table_fn(shape, padded)
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
    if not (ckpt_dir / "metadata.json").is_file():
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


def _whole_fc1(sharded: dict, num_layers: int) -> dict:
    """A TP=1 state dict with each fused fc1 saved as one tensor instead of its two factory halves.

    The stored global tensor is the same ([gate; up] rows, same key), so every TP layout loads
    it through its own factory; but Megatron's writer clones tensors that are views (the halves),
    which would hold a second copy of all MLP input weights during the save.
    """
    from megatron.core.dist_checkpointing.mapping import ShardedTensor, ShardedTensorFactory

    out = {}
    for name, value in sharded.items():
        if isinstance(value, ShardedTensorFactory) and name.endswith("mlp.linear_fc1.weight"):
            layer = int(name.split(".")[2])
            value = ShardedTensor.from_rank_offsets(
                value.key, value.data, (0, layer, num_layers), replica_id=value.replica_id, prepend_axis_num=1
            )
        out[name] = value
    return out


def stored_vocab_rows(ckpt_dir: str | Path) -> int:
    """Rows of the embedding as stored in the dist checkpoint (its own padding, any TP)."""
    from torch.distributed.checkpoint import FileSystemReader

    metadata = FileSystemReader(str(ckpt_dir)).read_metadata()
    entry = metadata.state_dict_metadata.get(EMBEDDING_KEY)
    if entry is None:
        raise BadInput(f"{ckpt_dir}: no {EMBEDDING_KEY} in the checkpoint")
    return int(entry.size[0])


# --------------------------------------------------------------------------- the two directions


def hf_to_megatron(hf_dir: str | Path, out_dir: str | Path, *, overwrite: bool = False, make_vocab_size_divisible_by: int = 128) -> dict:
    """Convert a HF Llama directory into a Megatron dist checkpoint + kocpt_model.json."""
    from megatron.core import dist_checkpointing

    from pretrain.model import build_gpt_model

    started = time.perf_counter()
    hf = HFCheckpoint(hf_dir)
    shape = shape_from_hf(hf)
    padded = padded_vocab_size(shape.vocab_size, 1, make_vocab_size_divisible_by)
    dtype = check_hf_shapes(hf, shape, parameter_table(shape, padded))
    generation_config = None
    if (hf.path / "generation_config.json").is_file():
        generation_config = json.loads((hf.path / "generation_config.json").read_text())
    with atomic_output_dir(out_dir, overwrite) as tmp, single_process_megatron():
        model = build_gpt_model(
            shape,
            params_dtype=dtype,
            make_vocab_size_divisible_by=make_vocab_size_divisible_by,
            use_transformer_engine=False,
            perform_initialization=False,
        )
        load_hf_into_megatron(model, hf, shape)
        dist_checkpointing.save(_whole_fc1(model.sharded_state_dict(), shape.num_hidden_layers), str(tmp))
        del model
        write_model_metadata(
            tmp,
            ModelMetadata(
                shape=shape,
                dtype=dtype,
                padded_vocab_size=padded,
                hf_config=hf.config,
                generation_config=generation_config,
            ),
        )
    return {
        "seconds": time.perf_counter() - started,
        "model_bytes": hf.model_bytes,
        "peak_rss_bytes": peak_rss_bytes(),
        "vocab_size": shape.vocab_size,
        "padded_vocab_size": padded,
    }


def tokenizer_vocab_size(tokenizer_dir: Path) -> int:
    model_file = tokenizer_dir / "tokenizer.model"
    if model_file.is_file():
        import sentencepiece as spm

        try:
            return spm.SentencePieceProcessor(model_file=str(model_file)).get_piece_size()
        except Exception as exc:  # sentencepiece raises RuntimeError/OSError variants
            raise BadInput(f"{model_file}: not a SentencePiece model ({exc})") from None
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")).get_vocab_size()


def hf_config_for(meta: ModelMetadata) -> dict:
    """config.json for the HF side: the source config with this model's vocabulary and dtype."""
    s = meta.shape
    config = dict(meta.hf_config)
    config.update(
        architectures=["LlamaForCausalLM"],
        model_type="llama",
        vocab_size=s.vocab_size,
        hidden_size=s.hidden_size,
        intermediate_size=s.intermediate_size,
        num_hidden_layers=s.num_hidden_layers,
        num_attention_heads=s.num_attention_heads,
        num_key_value_heads=s.num_key_value_heads,
        max_position_embeddings=s.max_position_embeddings,
        rms_norm_eps=s.rms_norm_eps,
        tie_word_embeddings=s.tie_word_embeddings,
        dtype=DTYPE_NAMES[meta.dtype],
    )
    config.pop("torch_dtype", None)
    if "rope_parameters" not in config:
        config["rope_theta"] = s.rope_theta
    return config


def resolve_latest(ckpt_dir: Path) -> Path:
    """A training run's directory stands for its newest complete checkpoint (its `latest` pointer)."""
    pointer = ckpt_dir / "latest"
    if pointer.is_file() and not (ckpt_dir / "metadata.json").is_file():
        target = ckpt_dir / pointer.read_text().strip()
        if not target.is_dir():
            raise BadInput(f"{pointer}: points at {target.name}, which does not exist")
        return target
    return ckpt_dir


def megatron_to_hf(
    ckpt_dir: str | Path,
    out_dir: str | Path,
    tokenizer_dir: str | Path | None,
    *,
    overwrite: bool = False,
    max_shard_bytes: int = 2 * 1024**3,
    progress: bool = True,
) -> dict:
    """Convert a Megatron dist checkpoint (any TP/PP it was saved at) into a HF Llama directory."""
    from pretrain.model import build_gpt_model

    started = time.perf_counter()
    ckpt_dir = resolve_latest(Path(ckpt_dir))
    meta = read_model_metadata(ckpt_dir)
    shape = meta.shape
    if tokenizer_dir is not None:
        tokenizer_dir = Path(tokenizer_dir)
        if not tokenizer_dir.is_dir():
            raise BadInput(f"{tokenizer_dir}: not a directory")
        pieces = tokenizer_vocab_size(tokenizer_dir)
        # Fewer pieces than rows is fine (a vocabulary padded by `resize --pad-to-multiple`).
        if pieces > shape.vocab_size:
            raise BadInput(
                f"{tokenizer_dir}: tokenizer has {pieces:,} pieces, more than the checkpoint's vocabulary {shape.vocab_size:,}"
            )
    stored = stored_vocab_rows(ckpt_dir)
    with atomic_output_dir(out_dir, overwrite) as tmp, single_process_megatron():
        # divisible_by = the stored row count makes the model's padded vocabulary exactly that.
        model = build_gpt_model(
            shape,
            params_dtype=meta.dtype,
            make_vocab_size_divisible_by=stored,
            use_transformer_engine=False,
            perform_initialization=False,
        )
        load_megatron_checkpoint_into(model, ckpt_dir)
        params = dict(model.named_parameters())
        table = parameter_table(shape, stored)
        specs, sources = [], {}
        for param in table:
            mg = next((n for n in param.megatron_names if n in params), None)
            if mg is None:
                raise BadInput(f"{ckpt_dir}: model has no parameter {param.megatron_name}")
            for name, rows in hf_row_counts(param).items():
                cols = tuple(params[mg].shape[1:])
                specs.append((name, (rows, *cols), meta.dtype))
                sources[name] = (param, params[mg])
        write_safetensors_shards(
            tmp,
            specs,
            # Megatron keeps RMSNorm weights in fp32 even in a bf16 model; HF stores one dtype.
            lambda name: hf_tensor(sources[name][0], name, sources[name][1].detach()).to(meta.dtype),
            max_shard_bytes=max_shard_bytes,
            progress="writing safetensors" if progress else None,
        )
        del model, params, sources
        (tmp / "config.json").write_text(json.dumps(hf_config_for(meta), indent=2) + "\n")
        generation = meta.generation_config or {
            "bos_token_id": meta.hf_config.get("bos_token_id", 1),
            "eos_token_id": meta.hf_config.get("eos_token_id", 2),
        }
        (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
        if tokenizer_dir is not None:
            copy_tokenizer_files(tokenizer_dir, tmp)
    return {
        "seconds": time.perf_counter() - started,
        "model_bytes": sum(s[2].itemsize * _numel(s[1]) for s in specs),
        "peak_rss_bytes": peak_rss_bytes(),
    }


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


# --------------------------------------------------------------------------- command line


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Convert a Llama between a Hugging Face directory and a Megatron-Core dist "
        "checkpoint (torch_dist; loads at any TP/PP layout).",
    )
    parser.add_argument("--to", required=True, choices=["megatron", "hf"], help="target format")
    parser.add_argument("--input", required=True, type=Path, help="HF_DIR (--to megatron), or MEGATRON_DIR (--to hf): a checkpoint, or a training run directory (its latest checkpoint)")
    parser.add_argument("--output", required=True, type=Path, help="directory to create")
    parser.add_argument("--tokenizer", type=Path, help="tokenizer directory to ship beside the HF model (--to hf)")
    parser.add_argument(
        "--make-vocab-size-divisible-by",
        type=int,
        default=128,
        help="pad the stored vocabulary to a multiple of this (--to megatron; larger TP pads more on load)",
    )
    parser.add_argument("--max-shard-size-mb", type=int, default=2048, help="safetensors shard size (--to hf)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    prog = prog or "convert"
    try:
        if args.to == "megatron":
            if args.tokenizer is not None:
                raise BadInput("--tokenizer is for --to hf (the Megatron checkpoint holds weights only)")
            result = hf_to_megatron(
                args.input,
                args.output,
                overwrite=args.overwrite,
                make_vocab_size_divisible_by=args.make_vocab_size_divisible_by,
            )
        else:
            if args.tokenizer is None:
                print(f"{prog}: warning: no --tokenizer; the HF directory will hold no tokenizer", file=sys.stderr)
            result = megatron_to_hf(
                args.input,
                args.output,
                args.tokenizer,
                overwrite=args.overwrite,
                max_shard_bytes=args.max_shard_size_mb * 1024**2,
            )
    except BadInput as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    ratio = result["peak_rss_bytes"] / max(result["model_bytes"], 1)
    print(
        f"{prog}: wrote {args.output} in {result['seconds']:.1f} s; "
        f"peak RSS {result['peak_rss_bytes'] / 2**30:.3f} GiB = {ratio:.2f}x the model's "
        f"{result['model_bytes'] / 2**30:.2f} GiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
