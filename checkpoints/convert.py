"""Hugging Face Llama ⇄ Megatron-Core GPTModel (dist_checkpointing, torch_dist), any TP/PP.

HF → Megatron builds the model with `mcore_llama.build.build_gpt_model` (the training stage's
builder too, so names and shapes agree), fills each parameter from safetensors through the mapping
table (`mcore_llama.weights`), and saves the model's own `sharded_state_dict()`: Megatron then
handles every layout question on load (TP splits of `linear_qkv` by query group, of `linear_fc1`
as [gate_shard; up_shard] per rank, PP layer offsets). The checkpoint directory contract (the
`kocpt_model.json` beside the tensors) is documented in `mcore_llama/run_dir.py`.

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
import json
import math
import sys
import time
from pathlib import Path


from checkpoints.config import load_checkpoints_config
from checkpoints.hf_io import copy_tokenizer_files, peak_rss_bytes, write_safetensors_shards
from mcore_llama.build import build_gpt_model
from mcore_llama.hf_checkpoint import DTYPE_NAMES, HFCheckpoint, resized_base_rows
from mcore_llama.families import hf_config_of, parameter_table_of
from mcore_llama.mapping import hf_row_counts, hf_tensor
from mcore_llama.run_dir import ModelMetadata, read_model_metadata, resolve_checkpoint, write_model_metadata
from mcore_llama.runtime import single_process_megatron
from mcore_llama.shape import padded_vocab_size
from mcore_llama.weights import (
    check_hf_shapes,
    load_hf_into_megatron,
    load_megatron_checkpoint_into,
    shape_from_hf,
    stored_vocab_rows,
)
from stagekit.config import add_config_arguments
from stagekit.errors import BadInput
from stagekit.outputs import check_output, staged_directory
from tokenizer.model_match import check_matches_fingerprint, check_rows, fingerprint, has_tokenizer
from tokenizer.token_encoder import TokenEncoder

STAGE = "checkpoints convert"  # names this stage's outputs (stagekit.outputs)


def _say(line: str) -> None:
    print(f"convert: {line}", file=sys.stderr)


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


# --------------------------------------------------------------------------- the two directions


def hf_to_megatron(hf_dir: str | Path, out_dir: str | Path, *, overwrite: bool = False, make_vocab_size_divisible_by: int = 128) -> dict:
    """Convert a HF Llama directory into a Megatron dist checkpoint + kocpt_model.json."""
    from megatron.core import dist_checkpointing

    started = time.perf_counter()
    rule = {"stage": STAGE, "overwrite": overwrite, "inputs": {"--input": hf_dir}}
    check_output(out_dir, **rule)
    hf = HFCheckpoint(hf_dir)
    shape = shape_from_hf(hf)
    padded = padded_vocab_size(shape.vocab_size, 1, make_vocab_size_divisible_by)
    dtype = check_hf_shapes(hf, shape, parameter_table_of(shape, padded))
    generation_config = None
    if (hf.path / "generation_config.json").is_file():
        generation_config = json.loads((hf.path / "generation_config.json").read_text())
    with staged_directory(out_dir, **rule, say=_say) as tmp, single_process_megatron():
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
                tokenizer=fingerprint(hf.path) if has_tokenizer(hf.path) else None,
                base_vocab_size=resized_base_rows(hf.path),
            ),
        )
    return {
        "seconds": time.perf_counter() - started,
        "model_bytes": hf.model_bytes,
        "peak_rss_bytes": peak_rss_bytes(),
        "vocab_size": shape.vocab_size,
        "padded_vocab_size": padded,
    }


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
    started = time.perf_counter()
    rule = {"stage": STAGE, "overwrite": overwrite, "inputs": {"--input": ckpt_dir, "--tokenizer": tokenizer_dir}}
    check_output(out_dir, **rule)
    ckpt_dir = resolve_checkpoint(ckpt_dir)
    meta = read_model_metadata(ckpt_dir)
    shape = meta.shape
    if tokenizer_dir is not None:
        tokenizer_dir = Path(tokenizer_dir)
        if not tokenizer_dir.is_dir():
            raise BadInput(f"{tokenizer_dir}: not a directory")
        # Fewer ids than rows only as padding makes them (`resize --pad-to-multiple`, Megatron's rule).
        suppressed = (meta.generation_config or {}).get("suppress_tokens")
        encoder = TokenEncoder.load(tokenizer_dir)
        check_rows(shape.vocab_size, encoder.vocab_size, model=ckpt_dir, tokenizer=tokenizer_dir, suppressed=suppressed)
        check_matches_fingerprint(encoder, meta.tokenizer, model=ckpt_dir)
    stored = stored_vocab_rows(ckpt_dir)
    with staged_directory(out_dir, **rule, say=_say) as tmp, single_process_megatron():
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
        table = parameter_table_of(shape, stored)
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
        (tmp / "config.json").write_text(json.dumps(hf_config_of(meta.shape, meta.hf_config, DTYPE_NAMES[meta.dtype]), indent=2) + "\n")
        generation = meta.generation_config or {
            "bos_token_id": meta.hf_config.get("bos_token_id", 1),
            "eos_token_id": meta.hf_config.get("eos_token_id", 2),
        }
        (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
        if tokenizer_dir is not None:
            copy_tokenizer_files(tokenizer_dir, tmp)
    return {
        "seconds": time.perf_counter() - started,
        "model_bytes": sum(s[2].itemsize * math.prod(s[1]) for s in specs),
        "peak_rss_bytes": peak_rss_bytes(),
    }


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
    add_config_arguments(parser, ("checkpoints",))  # checkpoints.convert: the defaults of the flags below
    parser.add_argument(
        "--make-vocab-size-divisible-by", type=int,
        help="pad the stored vocabulary to a multiple of this (--to megatron; larger TP pads more on load; default 128)",
    )
    parser.add_argument("--max-shard-size-mb", type=int, help="safetensors shard size (--to hf; default 2048)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    prog = prog or "convert"
    try:
        section = load_checkpoints_config(args.config, args.overrides, {
            "convert.make_vocab_size_divisible_by": args.make_vocab_size_divisible_by,
            "convert.max_shard_size_mb": args.max_shard_size_mb,
        }).convert
        if args.to == "megatron":
            if args.tokenizer is not None:
                raise BadInput("--tokenizer is for --to hf (the Megatron checkpoint holds weights only)")
            result = hf_to_megatron(
                args.input,
                args.output,
                overwrite=args.overwrite,
                make_vocab_size_divisible_by=section.make_vocab_size_divisible_by,
            )
        else:
            if args.tokenizer is None:
                print(f"{prog}: warning: no --tokenizer; the HF directory will hold no tokenizer", file=sys.stderr)
            result = megatron_to_hf(
                args.input,
                args.output,
                args.tokenizer,
                overwrite=args.overwrite,
                max_shard_bytes=section.max_shard_size_mb * 1024**2,
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
    from stagekit.entry import run_main  # Ctrl-C and bad input: one line

    sys.exit(run_main(main))
