"""Train Korean pieces to merge into a base tokenizer, for the base's family (tokenizer/family.py).

    python tokenizer/train.py --input corpus-out/ --vocab-size 16000 --output ko16k
    kocpt tokenizer train --input ko-train/*.txt --vocab-size 16000 --output ko16k
    kocpt tokenizer train --input demo-output/corpus --output ko/ko --config configs/demo.yaml

A SentencePiece base (Llama-2's; Mistral's stand-in when none is given) gets a SentencePiece model with
Llama's trainer settings, PREFIX.model and PREFIX.vocab (tokenizer/sentencepiece_family.py). A byte-level
BPE base (SmolLM2, Llama-3, Qwen2.5: a tokenizer.json or its HF directory) gets Korean BPE merges learned
under that base's own pre-tokenizer and byte alphabet, PREFIX.json, for `tokenizer/merge.py --base BASE
--add PREFIX.json` (tokenizer/byte_level_family.py, `--bpe-method continue|fresh`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from stagekit.config import add_config_arguments, load_section
from stagekit.outputs import refuse_overlap
from tokenizer import BadInput
from tokenizer.config import MODEL_TYPES, TokenizerConfig
from tokenizer.family import family_of

BPE_METHODS = ("continue", "fresh")


@dataclass
class TrainConfig:
    """The job: the `tokenizer:` section (trainer settings, base) and this command's own settings."""

    inputs: list[str]
    output: str
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    max_sentence_length: int = 4192
    max_piece_length: int = 16
    dedup: bool = True
    normalization: str = "identity"
    num_threads: int = 2
    verbose: bool = False
    bpe_method: str = "continue"  # byte-level base: continue from its merges, or train a fresh BPE and filter

    def validate(self) -> None:
        self.tokenizer.validate()
        if self.max_sentence_length < 64:
            raise BadInput(f"--max-sentence-length must be at least 64 bytes, got {self.max_sentence_length}")
        if not 1 <= self.max_piece_length <= 16:
            raise BadInput(f"--max-piece-length must be in [1, 16] (Llama-2 uses 16), got {self.max_piece_length}")
        if self.num_threads < 1:
            raise BadInput(f"--num-threads must be >= 1, got {self.num_threads}")
        if self.bpe_method not in BPE_METHODS:
            raise BadInput(f"--bpe-method must be continue or fresh, got {self.bpe_method!r}")
        if self.tokenizer.base and not Path(self.tokenizer.base).exists():
            raise BadInput(f"--base {self.tokenizer.base}: not found")
        if not self.output or Path(self.output).is_dir():
            raise BadInput(f"--output {self.output!r} must be a file prefix (PREFIX.model is written), not a directory")
        for suffix in (".model", ".vocab", ".json"):  # the files this stage writes (stagekit's output rule)
            refuse_overlap(f"{self.output}{suffix}", {"--input": self.inputs, "--base": self.tokenizer.base},
                           output_flag="--output")


def train(config: TrainConfig) -> dict:
    """Train for the base's family (the one the merge will extend: the stand-in when no base is given);
    write atomically; return a summary."""
    config.validate()
    base = config.tokenizer.base_model()
    return family_of(base).train(config, base)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train Korean pieces for a base tokenizer: a SentencePiece model (Llama-compatible settings) "
        "for a SentencePiece base, Korean BPE merges for a byte-level BPE base. The trainer settings come from the config's tokenizer: section (--config, --set tokenizer.KEY=VALUE); "
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
    parser.add_argument("--model-type", choices=MODEL_TYPES,
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
    parser.add_argument("--bpe-method", choices=BPE_METHODS, default="continue",
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
    """The `tokenizer:` section (file, then --set, then the explicit flags) and this command's flags."""
    section = load_section(TokenizerConfig, "tokenizer", args.config, args.overrides, flags={
        "vocab_size": args.vocab_size, "model_type": args.model_type, "character_coverage": args.character_coverage,
        "sample_size": args.sample_size, "seed": args.seed, "base": args.base,
    })
    return TrainConfig(
        inputs=args.input, output=args.output, tokenizer=section, max_sentence_length=args.max_sentence_length,
        max_piece_length=args.max_piece_length, dedup=args.dedup, normalization=args.normalization,
        num_threads=args.num_threads, verbose=args.verbose, bpe_method=args.bpe_method,
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
