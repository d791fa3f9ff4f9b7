"""Grow a Hugging Face model's vocabulary (a Llama or Qwen2: `mcore_llama.families`) to a merged tokenizer's,
initializing the new rows.

    kocpt checkpoints resize --model HF_DIR --tokenizer MERGED_TOKENIZER_DIR --output HF_DIR \\
        [--init fvt|mean|random] [--lm-head mean|first|calibrated] [--input-rows init|distilled]
        [--calibration-text FILE] [--untie] [--pad-to-multiple N]

Works tensor by tensor (lazy `safe_open` in, sharded safetensors out), so memory stays near the
size of the largest tensor, not the model: a 7B model resizes on a machine with far less RAM than
its size. Old rows are copied bit for bit; only rows for the new ids are computed (see
`checkpoints/vocab_init.py` for fvt / mean / random and the LM-head choice). Untied (Llama-2)
and tied embeddings are both handled: tied (SmolLM2, Llama-3.2 1B/3B) is one matrix grown once with
the input-side init (`--lm-head` does not apply), and the report and output say so; `--untie` gives a
tied base an LM head of its own (the old rows copied from the embedding, the new ones by `--lm-head`).
`--lm-head calibrated` moves each new output row by a logit shift fitted on `--calibration-text`
(`checkpoints/lm_head_calibration.py`): it loads the resized model once, and unties a tied base.
`--input-rows distilled` trains the new input rows so that the model reading the merged tokenization of
`--calibration-text` reaches the hidden states it reaches reading the base tokenization
(`checkpoints/token_distillation.py`); it runs before the calibration, and unties a tied base too. A byte-level
BPE tokenizer (tokenizer.json, no tokenizer.model: tokenizer/merge.py's output for SmolLM2 or
Llama-3) works too; FVT then spells each new token through the base's BPE
(`checkpoints/byte_level_resize.py`;
SentencePiece's pieces: `checkpoints/sentencepiece_resize.py`, both behind `NEW_PIECES`).

The merged tokenizer must extend the model's own: its first pieces must equal the base
tokenizer's (`--base-tokenizer`, default the model directory's tokenizer.model), which FVT also
uses to spell each new piece in old pieces. With `--pad-to-multiple N` the vocabulary is padded
with rows no tokenizer id reaches; they get the mean row and are listed in the generation
config's `suppress_tokens`, so `generate()` never produces them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from checkpoints.config import ResizeSection, load_checkpoints_config
from checkpoints.hf_io import copy_tokenizer_files, overwrite_tensor, peak_rss_bytes, write_safetensors_shards
from checkpoints.byte_level_resize import byte_level_new_pieces
from checkpoints.lm_head_calibration import calibrate, calibrated_rows, read_calibration_documents
from checkpoints.sentencepiece_resize import sentencepiece_new_pieces
from checkpoints.token_distillation import distill
from checkpoints.vocab_init import INIT_METHODS, INPUT_ROW_METHODS, LM_HEAD_METHODS, NewPiece, new_rows
from mcore_llama.families import family_of_hf_config
from mcore_llama.hf_checkpoint import RESIZE_REPORT, HFCheckpoint
from stagekit.config import add_config_arguments
from stagekit.errors import BadInput
from stagekit.outputs import check_output, staged_directory
from tokenizer.family import BYTE_LEVEL, SENTENCEPIECE, family_of

STAGE = "checkpoints resize"  # names this stage's outputs (stagekit.outputs)
# Per tokenizer family: (the job, model dir, tokenizer dir, the model's rows, whether the model family ships
# rows no base id reaches) -> (base ids, merged vocabulary size, the new ids with their FVT sources).
NEW_PIECES = {SENTENCEPIECE: sentencepiece_new_pieces, BYTE_LEVEL: byte_level_new_pieces}


@dataclass(frozen=True)
class ResizeJob:
    """One resize: which model, with which merged tokenizer, into which output; how is the section's."""

    model: Path
    tokenizer: Path
    output: Path
    section: ResizeSection = ResizeSection()  # checkpoints.resize: init, lm_head, padding, seed, shard size
    base_tokenizer: Path | None = None
    overwrite: bool = False

    def validate(self) -> None:
        try:
            self.section.validate()
        except ValueError as exc:
            raise BadInput(f"checkpoints: {exc}") from None


def output_rule(config: ResizeJob) -> dict:
    """The stage and the inputs its output must stay clear of (stagekit.outputs)."""
    return {"stage": STAGE, "overwrite": config.overwrite,
            "inputs": {"--model": config.model, "--tokenizer": config.tokenizer, "--base-tokenizer": config.base_tokenizer,
                       "--calibration-text": config.section.calibration_text}}


def _say(line: str) -> None:
    print(f"resize: {line}", file=sys.stderr)


def resize(config: ResizeJob, progress: bool = True) -> dict:
    config.validate()
    check_output(config.output, **output_rule(config))
    # Read once, before anything is written: a bad calibration file fails now, not after the resize.
    calibration_documents = (read_calibration_documents(config.section.calibration_text)
                             if config.section.calibration_text else None)
    started = time.perf_counter()
    hf = HFCheckpoint(config.model)
    try:
        family = family_of_hf_config(hf.config)
    except ValueError as exc:
        raise BadInput(f"{hf.path / 'config.json'}: {exc}") from None
    embed_name, head_name = family.embedding_name, family.lm_head_name  # the family's tensor names
    tokenizer_dir = Path(config.tokenizer)
    if not tokenizer_dir.is_dir():
        raise BadInput(f"{tokenizer_dir}: not a directory")
    embed = hf.info(embed_name)
    old_vocab, hidden = embed.shape
    if hf.config.get("vocab_size") != old_vocab:
        raise BadInput(f"{hf.path}: config vocab_size {hf.config.get('vocab_size')} but {embed_name} has {old_vocab} rows")
    base_tied = bool(hf.config.get("tie_word_embeddings", False))
    calibrated = config.section.lm_head == "calibrated"
    distilled = config.section.input_rows == "distilled"
    # The output gets an LM head of its own: fitted rows are fitted for one side.
    untie = base_tied and (config.section.untie or calibrated or distilled)
    tied = base_tied and not untie
    if not base_tied and hf.info(head_name).shape != embed.shape:
        raise BadInput(f"{hf.path}: {head_name} shape {list(hf.info(head_name).shape)} != {embed_name} {list(embed.shape)}")
    tokenizer_kind = family_of(tokenizer_dir).name
    base_ids, new_vocab, new_pieces = NEW_PIECES[tokenizer_kind](config, hf.path, tokenizer_dir, old_vocab,
                                                                 family.rows_may_exceed_ids)
    padded_vocab = -(-new_vocab // config.section.pad_to_multiple) * config.section.pad_to_multiple
    pad_pieces = [NewPiece(i, "", ()) for i in range(new_vocab, padded_vocab)]
    generator = torch.Generator().manual_seed(config.section.seed)
    init_std = float(hf.config.get("initializer_range", 0.02))

    def grown(name: str) -> torch.Tensor:
        old = hf.read(embed_name if name == head_name and untie else name)  # untie: the head starts as the embedding
        out = torch.empty((padded_vocab, hidden), dtype=old.dtype)
        # Rows past the base tokenizer's ids (Qwen2's spare rows) are reached by no token: the merged
        # tokenizer's new ids take their places, and new rows are made for them like any others.
        old = old[:base_ids]
        out[:base_ids] = old  # bit-identical copy
        is_head = name == head_name and not tied  # tied: one matrix, the input-side init
        out[base_ids:new_vocab] = new_rows(
            old, new_pieces, config.section.init, is_lm_head=is_head, lm_head_method=config.section.lm_head,
            init_std=init_std, generator=generator,
        )
        out[new_vocab:] = new_rows(old, pad_pieces, "mean")
        return out

    def make_tensor(name: str) -> torch.Tensor:
        return grown(name) if name in (embed_name, head_name) else hf.read(name)

    tensors = dict(hf.tensors)
    if untie:  # a head of its own, made from the embedding (a tied checkpoint may not store one)
        tensors[head_name] = embed
    specs = [
        (name, (padded_vocab, hidden) if name in (embed_name, head_name) else info.shape, info.dtype)
        for name, info in sorted(tensors.items(), key=lambda kv: _hf_order(kv[0], embed_name))
    ]
    with staged_directory(config.output, **output_rule(config), say=_say) as tmp:
        copy_tokenizer_files(tokenizer_dir, tmp)
        write_safetensors_shards(
            tmp, specs, make_tensor, max_shard_bytes=config.section.max_shard_size_mb * 1024**2,
            progress="resizing" if progress else None,
        )
        model_config = dict(hf.config)
        model_config["vocab_size"] = padded_vocab
        if untie:
            model_config["tie_word_embeddings"] = False
        (tmp / "config.json").write_text(json.dumps(model_config, indent=2) + "\n")
        generation = {"bos_token_id": hf.config.get("bos_token_id", 1), "eos_token_id": hf.config.get("eos_token_id", 2)}
        if (hf.path / "generation_config.json").is_file():
            generation = json.loads((hf.path / "generation_config.json").read_text())
        if padded_vocab > new_vocab:
            generation["suppress_tokens"] = list(range(new_vocab, padded_vocab))
        (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
        calibration = distillation = None
        if distilled:  # the model is complete in `tmp`: train its new input rows and write them over
            section = config.section
            distillation = distill(tmp, config.base_tokenizer or hf.path, range(base_ids, new_vocab), calibration_documents,
                                   section.calibration_text, section.distillation_tokens, section.distillation_epochs,
                                   section.distillation_lr, seed=section.seed, progress=progress)
            embedding = HFCheckpoint(tmp).read(embed_name)
            embedding[base_ids:new_vocab] = distillation.rows.to(embedding.dtype)
            overwrite_tensor(tmp, embed_name, embedding)
        if calibrated:  # fit the new output rows' shifts (to the states the final input rows give) and write them over
            calibration = calibrate(tmp, range(base_ids, new_vocab), calibration_documents,
                                    config.section.calibration_text, config.section.calibration_tokens,
                                    config.section.calibration_prior_std)
            head = HFCheckpoint(tmp).read(head_name)
            head[base_ids:new_vocab] = calibrated_rows(head[base_ids:new_vocab], calibration)
            overwrite_tensor(tmp, head_name, head)
        fvt_lengths = [len(p.source_ids) for p in new_pieces if p.source_ids]
        report = {
            "model": str(hf.path),
            "tokenizer": str(tokenizer_dir),
            "init": config.section.init,
            "lm_head": ("tied: the LM head is the embedding matrix, grown once with the input-side init"
                        if tied else config.section.lm_head if config.section.init == "fvt" or calibrated
                        else config.section.init),
            "tied_embeddings": tied,
            # The base was tied and this model has its own LM head (`untie`, or what `calibrated`/`distilled` need).
            "untied": untie,
            "input_rows": config.section.input_rows,
            "distillation": None if distillation is None else {
                "text": str(config.section.calibration_text), **distillation.summary()},
            "calibration": None if calibration is None else {
                "text": str(config.section.calibration_text), "prior_std": config.section.calibration_prior_std,
                **calibration.summary()},
            "tokenizer_kind": {SENTENCEPIECE: "SentencePiece"}.get(tokenizer_kind, tokenizer_kind),
            "model_family": family.name,
            "old_vocab_size": old_vocab,
            # Rows copied bit for bit (the base tokenizer's ids): pretrain's model.base_vocab_size.
            "base_vocab_size": base_ids,
            "tokenizer_pieces": new_vocab,
            "vocab_size": padded_vocab,
            "new_rows": new_vocab - base_ids,
            "padding_rows": padded_vocab - new_vocab,
            "fvt_mean_pieces_per_new_token": (sum(fvt_lengths) / len(fvt_lengths)) if fvt_lengths else None,
            "fvt_mean_row_fallbacks": sum(1 for p in new_pieces if not p.source_ids) if config.section.init == "fvt" else None,
        }
        (tmp / RESIZE_REPORT).write_text(json.dumps(report, indent=2) + "\n")
    report.update(seconds=time.perf_counter() - started, model_bytes=hf.model_bytes, peak_rss_bytes=peak_rss_bytes())
    return report


def _fits_line(report: dict) -> str:
    line = ""
    if distillation := report["distillation"]:
        line += (f"; input rows distilled on {distillation['merged_tokens']:,} tokens x {distillation['epochs']} "
                 f"({distillation['flops']:.2e} FLOPs): relative error {distillation['relative_error_before']:.4f} -> "
                 f"{distillation['relative_error_after']:.4f}")
    if calibration := report["calibration"]:
        line += (f"; LM head calibrated on {calibration['tokens']:,} tokens ({calibration['forward_flops']:.2e} FLOPs): "
                 f"{calibration['nats_per_token_before']:.3f} -> {calibration['nats_per_token_after']:.3f} nats/token")
    return line


def _hf_order(name: str, embedding: str):
    """Embeddings first, layers in numeric order, then the final norm and the LM head."""
    if name == embedding:
        return (0, 0, name)
    if name.startswith("model.layers."):
        return (1, int(name.split(".")[2]), name)
    return (2, 0 if name == "model.norm.weight" else 1, name)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Grow a Hugging Face Llama's embeddings and LM head to a merged tokenizer's "
        "vocabulary; old rows are kept bit for bit, new rows initialized.",
    )
    parser.add_argument("--model", required=True, type=Path, help="Hugging Face Llama directory (safetensors)")
    parser.add_argument("--tokenizer", required=True, type=Path, help="merged tokenizer directory (tokenizer.model ...)")
    parser.add_argument("--output", required=True, type=Path, help="directory to create")
    add_config_arguments(parser, ("checkpoints",))  # checkpoints.resize: the defaults of the flags below
    parser.add_argument("--init", choices=INIT_METHODS, help="new-row initialization (default fvt)")
    parser.add_argument(
        "--lm-head", choices=LM_HEAD_METHODS,
        help="fvt LM-head rows: mean of the pieces' rows, the first piece's row as EEVE does, or the mean moved by "
             "a logit shift per new token fitted on --calibration-text (default mean)",
    )
    parser.add_argument("--input-rows", choices=INPUT_ROW_METHODS,
                        help="new input rows: the --init rows, or those rows distilled on --calibration-text so the model "
                             "reads the new tokens as the base reads their pieces (default init)")
    parser.add_argument("--calibration-text", type=Path,
                        help="--lm-head calibrated / --input-rows distilled: Korean text, one document per line (or JSONL, "
                             "or a corpus output); not your evaluation text")
    parser.add_argument("--calibration-tokens", type=int, help="positions of it the LM head is fitted on (default 16384)")
    parser.add_argument("--distillation-tokens", type=int,
                        help="merged-tokenizer positions of it the input rows are distilled on (default 8192)")
    parser.add_argument("--untie", action="store_true", default=None,
                        help="a tied base (SmolLM2, Llama-3.2) gets an LM head of its own; --lm-head calibrated and --input-rows "
                             "distilled imply it")
    parser.add_argument("--pad-to-multiple", type=int, help="pad the vocabulary to a multiple of N (default 1)")
    parser.add_argument(
        "--base-tokenizer", type=Path,
        help="the model's own tokenizer (dir or tokenizer.model); default: the one in --model",
    )
    parser.add_argument("--seed", type=int, help="seed for --init random (default 0)")
    parser.add_argument("--max-shard-size-mb", type=int, help="safetensors shard size (default 2048)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    prog = prog or "resize"
    try:
        section = load_checkpoints_config(args.config, args.overrides, {
            "resize.init": args.init, "resize.lm_head": args.lm_head, "resize.pad_to_multiple": args.pad_to_multiple,
            "resize.seed": args.seed, "resize.max_shard_size_mb": args.max_shard_size_mb, "resize.untie": args.untie,
            "resize.calibration_text": None if args.calibration_text is None else str(args.calibration_text),
            "resize.calibration_tokens": args.calibration_tokens, "resize.input_rows": args.input_rows,
            "resize.distillation_tokens": args.distillation_tokens,
        }).resize
        report = resize(
            ResizeJob(model=args.model, tokenizer=args.tokenizer, output=args.output, section=section,
                      base_tokenizer=args.base_tokenizer, overwrite=args.overwrite)
        )
    except BadInput as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    ratio = report["peak_rss_bytes"] / max(report["model_bytes"], 1)
    print(
        f"{prog}: {report['old_vocab_size']:,} -> {report['vocab_size']:,} rows "
        f"({report['new_rows']:,} new, {report['init']}"
        f"{'; tied embeddings: one matrix, one init, the LM head shares it' if report['tied_embeddings'] else ''}"
        f"{'; the tied base now has an LM head of its own (untied)' if report['untied'] else ''}"
        f"{_fits_line(report)}) in {report['seconds']:.1f} s; wrote {args.output}; "
        f"peak RSS {report['peak_rss_bytes'] / 2**30:.3f} GiB = {ratio:.2f}x the model's {report['model_bytes'] / 2**30:.2f} GiB"
    )
    return 0


if __name__ == "__main__":
    from stagekit.entry import run_main  # Ctrl-C and bad input: one line

    sys.exit(run_main(main))
