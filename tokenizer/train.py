"""Train a Korean SentencePiece model to merge into Llama-2's tokenizer.

    python tokenizer/train.py --input corpus-out/ --vocab-size 16000 --output ko16k
    kocpt tokenizer train --input ko-train/*.txt --vocab-size 16000 --output ko16k
    kocpt tokenizer train --input demo-output/corpus --output ko/ko --config configs/demo.yaml

Writes PREFIX.model and PREFIX.vocab (SentencePiece's own convention). With `--base` a byte-level BPE
(SmolLM2, Llama-3, Qwen2.5: a tokenizer.json or its HF directory) it instead learns a BPE with Hugging Face
`tokenizers` under that base's own pre-tokenizer and byte alphabet and writes PREFIX.json, for
`tokenizer/merge.py --base BASE --add PREFIX.json`. `--bpe-method continue` (default) learns --vocab-size
Korean merges on top of the base's own segmentation (tokenizer/bpe_continue.py; 0.557 tokens per
character with 16,000 on SmolLM2); `fresh` trains a new BPE of --vocab-size tokens with `tokenizers`, of
which the merge keeps about two thirds (tokenizer/bpe_merge.py; 0.637 with 15,715 kept of 24,000).
The SentencePiece trainer settings that
matter for a merge into Llama-2 are fixed to Llama's: BPE, identity normalization (NFC is the corpus
stage's job; an NFKC normalizer would make pieces that never match Llama's unnormalized input),
byte_fallback, split_digits, whitespace-only pieces, no extra-whitespace removal, 16-char pieces.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # `python tokenizer/train.py`: import the package, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import sentencepiece as spm
from tqdm import tqdm

from stagekit.config import add_config_arguments, load_section
from stagekit.outputs import refuse_overlap, write_file_atomic
from tokenizer import BadInput
from tokenizer.bpe_continue import continue_merges, continued_tokenizer_json
from tokenizer.bpe_merge import byte_level_json, train_byte_level
from tokenizer.config import TokenizerConfig
from tokenizer.spm_model import load_model
from tokenizer.training_text import iter_texts, resolve_inputs, sample, sentences


@dataclass
class TrainConfig:
    inputs: list[str]
    output: str
    vocab_size: int = 16000
    model_type: str = "bpe"
    character_coverage: float = 0.9995
    sample_size: int = 2_000_000
    seed: int = 1234
    max_sentence_length: int = 4192
    max_piece_length: int = 16
    dedup: bool = True
    normalization: str = "identity"
    num_threads: int = 2
    verbose: bool = False
    base: str | None = None  # a byte-level BPE base: learn merges for it (PREFIX.json), not a SentencePiece model
    bpe_method: str = "continue"  # byte-level base: continue from its merges, or train a fresh BPE and filter

    def validate(self) -> None:
        if self.model_type not in ("bpe", "unigram"):
            raise BadInput(f"--model-type must be bpe or unigram, got {self.model_type!r}")
        if self.vocab_size < 300:
            raise BadInput(f"--vocab-size {self.vocab_size} is too small: 259 ids go to <unk>, <s>, </s> and 256 byte pieces")
        if not 0.9 <= self.character_coverage <= 1.0:
            raise BadInput(f"--character-coverage must be in [0.9, 1.0], got {self.character_coverage}")
        if self.max_sentence_length < 64:
            raise BadInput(f"--max-sentence-length must be at least 64 bytes, got {self.max_sentence_length}")
        if not 1 <= self.max_piece_length <= 16:
            raise BadInput(f"--max-piece-length must be in [1, 16] (Llama-2 uses 16), got {self.max_piece_length}")
        if self.num_threads < 1:
            raise BadInput(f"--num-threads must be >= 1, got {self.num_threads}")
        if not self.output or Path(self.output).is_dir():
            raise BadInput(f"--output {self.output!r} must be a file prefix (PREFIX.model is written), not a directory")
        for suffix in (".model", ".vocab", ".json"):  # the files this stage writes (stagekit's output rule)
            refuse_overlap(f"{self.output}{suffix}", {"--input": self.inputs, "--base": self.base}, output_flag="--output")


def trainer_kwargs(config: TrainConfig) -> dict:
    """SentencePiece trainer flags; those marked (Llama) must equal Llama-2's for a clean merge."""
    return dict(
        model_type=config.model_type,
        vocab_size=config.vocab_size,
        character_coverage=config.character_coverage,
        normalization_rule_name=config.normalization,  # (Llama) identity
        add_dummy_prefix=True,  # (Llama)
        remove_extra_whitespaces=False,  # (Llama)
        byte_fallback=True,  # (Llama)
        split_digits=True,  # (Llama) one digit per token
        split_by_unicode_script=True,  # (Llama)
        split_by_whitespace=True,  # (Llama)
        split_by_number=True,  # (Llama)
        allow_whitespace_only_pieces=True,  # (Llama)
        max_sentencepiece_length=config.max_piece_length,  # (Llama) 16
        max_sentence_length=config.max_sentence_length,
        unk_surface=" \u2047 ",  # (Llama)
        input_sentence_size=0,  # we sample ourselves, deterministically
        shuffle_input_sentence=False,
        num_threads=config.num_threads,
        vocabulary_output_piece_score=True,
        hard_vocab_limit=True,
        minloglevel=0 if config.verbose else 2,
    )


def train(config: TrainConfig) -> dict:
    """Sample sentences, train, write PREFIX.model/.vocab atomically; return a summary."""
    config.validate()
    byte_level_base = _byte_level_base(config.base)
    inputs = resolve_inputs(config.inputs)
    started = time.perf_counter()
    texts = tqdm(iter_texts(inputs), desc="reading", unit=" docs", mininterval=1.0, disable=None)
    chosen, seen, duplicates = sample(
        sentences(texts, config.max_sentence_length), config.sample_size, config.seed, config.dedup
    )
    if not chosen:
        raise BadInput(f"{inputs[0][1]}: no text found in the input")
    read_seconds = time.perf_counter() - started
    if byte_level_base is not None:
        return _train_byte_level(config, chosen, byte_level_base, read_seconds)
    print(f"training {config.model_type} vocab={config.vocab_size} on {len(chosen):,} sentences "
          f"({seen:,} distinct seen, {duplicates:,} duplicates skipped) ...", file=sys.stderr)
    spm.set_random_generator_seed(config.seed)
    prefix = Path(config.output)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".train-", dir=prefix.parent) as tmp:
        tmp_prefix = Path(tmp) / "model"
        started = time.perf_counter()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(chosen), model_prefix=str(tmp_prefix), **trainer_kwargs(config)
            )
        except RuntimeError as exc:
            message = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
            message = message.rsplit("] ", 1)[-1]  # drop "INTERNAL: src/trainer_interface.cc(600) [check]"
            raise BadInput(f"SentencePiece training failed: {message}") from None
        train_seconds = time.perf_counter() - started
        trained = load_model(f"{tmp_prefix}.model")
        # The temporary path is recorded in the model; record the real one so a seed gives identical bytes.
        trained.trainer_spec.model_prefix = prefix.name
        model_bytes = trained.SerializeToString()
        vocab_bytes = (Path(f"{tmp_prefix}.vocab")).read_bytes()
    # .vocab first: a present .model is the sign of a complete run.
    write_file_atomic(f"{prefix}.vocab", vocab_bytes)
    write_file_atomic(f"{prefix}.model", model_bytes)
    proto = load_model(f"{prefix}.model")
    summary = {
        "model": f"{prefix}.model",
        "pieces": len(proto.pieces),
        "sentences": len(chosen),
        "distinct_sentences_seen": seen,
        "duplicates_skipped": duplicates,
        "read_seconds": round(read_seconds, 2),
        "train_seconds": round(train_seconds, 2),
    }
    print(f"wrote {prefix}.model ({summary['pieces']:,} pieces) in {train_seconds:.1f}s", file=sys.stderr)
    return summary


def _byte_level_base(base: str | None) -> Path | None:
    """The base's tokenizer.json when --base is a byte-level BPE; a SentencePiece base changes nothing."""
    if base is None:
        return None
    if not Path(base).exists():
        raise BadInput(f"--base {base}: not found")
    found = byte_level_json(base)
    if found is None and not (Path(base).suffix == ".model" or (Path(base) / "tokenizer.model").is_file()):
        raise BadInput(f"--base {base}: neither a byte-level BPE tokenizer.json (or its directory) nor a SentencePiece model")
    return found


def _train_byte_level(config: TrainConfig, chosen: list[str], base_json: Path, read_seconds: float) -> dict:
    if config.model_type != "bpe":
        raise BadInput("--model-type unigram: a byte-level BPE base takes BPE merges only")
    if config.bpe_method not in ("continue", "fresh"):
        raise BadInput(f"--bpe-method must be continue or fresh, got {config.bpe_method!r}")
    print(f"learning byte-level BPE merges ({config.bpe_method}, {config.vocab_size}) for {base_json} on "
          f"{len(chosen):,} sentences ...", file=sys.stderr)
    started = time.perf_counter()
    if config.bpe_method == "continue":
        text = continued_tokenizer_json(base_json, continue_merges(chosen, base_json, config.vocab_size))
    else:
        text = train_byte_level(chosen, base_json, config.vocab_size)
    target = Path(f"{config.output}.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(target, text.encode("utf-8"))
    merges = len(json.loads(text)["model"]["merges"])
    seconds = time.perf_counter() - started
    print(f"wrote {target} ({merges:,} merges) in {seconds:.1f}s", file=sys.stderr)
    return {"model": str(target), "merges": merges, "sentences": len(chosen), "read_seconds": round(read_seconds, 2),
            "train_seconds": round(seconds, 2)}


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train a Korean SentencePiece model (Llama-compatible settings) to merge into Llama-2. "
        "The trainer settings come from the config's tokenizer: section (--config, --set tokenizer.KEY=VALUE); "
        "the flags below win over it.",
    )
    parser.add_argument("--input", nargs="+", required=True, metavar="PATH",
                        help="corpus output dirs / shards dirs / *.jsonl.zst shards, or plain text files (one document per line)")
    parser.add_argument("--output", required=True, metavar="PREFIX", help="writes PREFIX.model and PREFIX.vocab "
                        "(PREFIX.json with a byte-level --base)")
    parser.add_argument("--base", metavar="BASE", help="the tokenizer to be extended; when it is a byte-level BPE "
                        "(tokenizer.json or an HF directory holding one, e.g. SmolLM2, Llama-3), learn merges under its "
                        "pre-tokenizer and write PREFIX.json; a SentencePiece base changes nothing (default: tokenizer.base)")
    add_config_arguments(parser, ("tokenizer",))
    defaults = TokenizerConfig()
    parser.add_argument("--vocab-size", type=int, help="pieces in the model, incl. 3 special and 256 byte pieces "
                        f"(default: tokenizer.vocab_size, else {defaults.vocab_size})")
    parser.add_argument("--model-type", choices=["bpe", "unigram"],
                        help="bpe: pieces stay reachable after a BPE merge; unigram only for comparison "
                        f"(default: tokenizer.model_type, else {defaults.model_type})")
    parser.add_argument("--character-coverage", type=float,
                        help=f"(default: tokenizer.character_coverage, else {defaults.character_coverage})")
    parser.add_argument("--sample-size", type=int, help="sentences sampled for training, 0: all "
                        f"(default: tokenizer.sample_size, else {defaults.sample_size})")
    parser.add_argument("--seed", type=int, help="sampling and trainer seed, same seed, same model "
                        f"(default: tokenizer.seed, else {defaults.seed})")
    parser.add_argument("--max-sentence-length", type=int, default=4192,
                        help="bytes; longer lines are split at sentence ends (default: %(default)s)")
    parser.add_argument("--max-piece-length", type=int, default=16, help="(default: %(default)s)")
    parser.add_argument("--bpe-method", choices=["continue", "fresh"], default="continue",
                        help="byte-level --base: learn --vocab-size Korean merges on the base's own segmentation "
                        "(continue), or train a fresh BPE of --vocab-size tokens and let the merge filter it (fresh) "
                        "(default: %(default)s)")
    parser.add_argument("--no-dedup", dest="dedup", action="store_false", help="keep exact duplicate sentences")
    parser.add_argument("--normalization", default="identity", choices=["identity", "nfkc", "nmt_nfkc", "nfkc_cf", "nmt_nfkc_cf"],
                        help="keep identity to merge into Llama-2 (its normalizer) (default: %(default)s)")
    parser.add_argument("--num-threads", type=int, default=2, help="(default: %(default)s)")
    parser.add_argument("--verbose", action="store_true", help="show SentencePiece's own training log")
    return parser


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """The `tokenizer:` section (file, then --set), then the explicit flags."""
    section = load_section(TokenizerConfig, "tokenizer", args.config, args.overrides, flags={
        "vocab_size": args.vocab_size, "model_type": args.model_type, "character_coverage": args.character_coverage,
        "sample_size": args.sample_size, "seed": args.seed, "base": args.base,
    })
    return TrainConfig(
        inputs=args.input, output=args.output, vocab_size=section.vocab_size, model_type=section.model_type,
        character_coverage=section.character_coverage, sample_size=section.sample_size, seed=section.seed,
        max_sentence_length=args.max_sentence_length, max_piece_length=args.max_piece_length,
        dedup=args.dedup, normalization=args.normalization, num_threads=args.num_threads, verbose=args.verbose,
        base=section.base, bpe_method=args.bpe_method,
    )


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        train(resolve_config(args))
    except BadInput as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from stagekit.entry import run_main  # Ctrl-C and bad input: one line

    sys.exit(run_main(main))
