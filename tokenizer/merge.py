"""Merge Korean pieces into a base tokenizer, the way its family merges (tokenizer/family.py).

    python tokenizer/merge.py --base ../shared/data/llama2-tokenizer --add ko16k.model --output tok/
    kocpt tokenizer merge --base llama2/tokenizer.model --add ko16k.model --output tok/ --hangul-nfc
    kocpt tokenizer merge --add ko/ko.model --output tok/ --config configs/demo.yaml   # tokenizer.base, .max_added, ...

A SentencePiece base (Llama-2's; tokenizer/spm_merge.py): `safe` mode (default) adds only pieces absent
from the base that contain Hangul and no digit, scored strictly below every base score in the added
model's own order, so BPE applies every Llama merge before any Korean one and no non-Korean text changes ids. Every added piece is checked to be
producible by BPE; missing intermediates are added, the rest dropped and counted. The base's
normalizer and trainer settings are kept; `trainer_spec.vocab_size` is set to the real size.

A byte-level BPE base (SmolLM2, Llama-3, Qwen2.5: a tokenizer.json or its HF directory) takes the
PREFIX.json of `tokenizer/train.py --base BASE` instead; see tokenizer/bpe_merge.py and bpe_write.py:

    python tokenizer/merge.py --base smollm2/ --add ko24k.json --output tok/ --max-added 16000

`chinese-llama` mode reproduces Chinese-LLaMA's `merge_tokenizers.py` (every new piece appended with
score 0) for comparison only.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from stagekit.config import add_config_arguments, load_section
from stagekit.outputs import check_output
from tokenizer import BadInput
from tokenizer.config import MODES, TokenizerConfig
from tokenizer.family import family_of
from tokenizer.piece_merge import SCRIPTS, merge_safe  # noqa: F401  (merge_safe: the library entry)

STAGE = "tokenizer merge"  # names this stage's outputs (stagekit.outputs)


@dataclass
class MergeConfig:
    """The job: the `tokenizer:` section (base, mode, max_added, hangul_nfc) and this command's own settings."""

    add: list[str]
    output: str
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    script: str = "hangul"
    add_special: list[str] = field(default_factory=list)
    overwrite: bool = False
    allow_normalizer_mismatch: bool = False
    eval_korean: list[str] = field(default_factory=list)
    eval_english: list[str] = field(default_factory=list)
    eval_code_files: int = 100
    eval_max_lines: int = 2000
    plot: bool = True

    @property
    def base(self) -> str:
        """The tokenizer to extend: tokenizer.base, or the Mistral stand-in when it is null."""
        return str(self.tokenizer.base_model())

    @property
    def mode(self) -> str:
        return self.tokenizer.mode

    @property
    def max_added(self) -> int:
        return self.tokenizer.max_added

    @property
    def hangul_nfc(self) -> bool:
        return self.tokenizer.hangul_nfc

    def output_rule(self) -> dict:
        """The stage and the inputs its output must stay clear of (stagekit.outputs)."""
        return {"stage": STAGE, "overwrite": self.overwrite,
                "inputs": {"--base": self.base, "--add": self.add, "--eval-korean": self.eval_korean,
                           "--eval-english": self.eval_english}}

    def validate(self) -> None:
        self.tokenizer.validate()
        if self.script not in SCRIPTS:
            raise BadInput(f"--script must be one of {', '.join(SCRIPTS)}, got {self.script!r}")
        if self.eval_code_files < 0 or self.eval_max_lines < 1:
            raise BadInput("--eval-code-files must be >= 0, --eval-max-lines >= 1")
        check_output(self.output, **self.output_rule())
        for path in self.eval_korean + self.eval_english:
            if not Path(path).is_file():
                raise BadInput(f"{path}: evaluation text not found")


def merge(config: MergeConfig) -> dict:
    """Merge for the base's family, check, publish `config.output`; its report.json as a dict."""
    config.validate()
    _, report = family_of(config.base).merge(config)
    return report.to_dict()


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Merge Korean SentencePiece pieces into a Llama-2 tokenizer and write a Hugging Face "
        "tokenizer directory. --base, --mode, --max-added and --hangul-nfc default to the config's tokenizer: "
        "section (--config, --set tokenizer.KEY=VALUE); the flags win over it.",
    )
    parser.add_argument("--base", help="Llama-2 tokenizer.model, or a directory holding one, or a byte-level BPE "
                        "tokenizer.json (or its HF directory) (default: tokenizer.base; "
                        "when that is null too, Mistral-7B's tokenizer.model.v1 from mistral-common stands in, and says so)")
    parser.add_argument("--add", required=True, action="append", metavar="FILE", help="SentencePiece model to add (repeatable); "
                        "PREFIX.json from tokenizer/train.py --base for a byte-level base")
    parser.add_argument("--output", required=True, metavar="DIR", help="new tokenizer directory")
    add_config_arguments(parser, ("tokenizer",))
    parser.add_argument("--mode", choices=MODES, help="safe: Hangul pieces below every base score; chinese-llama: "
                        "score-0 appending, for comparison (default: tokenizer.mode, else safe)")
    parser.add_argument("--script", choices=SCRIPTS, default="hangul",
                        help="safe mode: add only pieces containing this script (default: %(default)s)")
    parser.add_argument("--max-added", type=int, help="safe mode: at most this many pieces from the added models, "
                        "0: all (default: tokenizer.max_added, else 0)")
    parser.add_argument("--hangul-nfc", action=argparse.BooleanOptionalAction, help="compose conjoining Hangul jamo "
                        "into syllables (NFD Korean == NFC), nothing else (default: tokenizer.hangul_nfc, else off)")
    parser.add_argument("--add-special", nargs="+", default=[], metavar="TOKEN", help="special (control) tokens appended at the end")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    parser.add_argument("--allow-normalizer-mismatch", action="store_true", help="accept added models with another normalizer")
    parser.add_argument("--eval-korean", nargs="+", default=[], metavar="FILE", help="Korean held-out text for the report")
    parser.add_argument("--eval-english", nargs="+", default=[], metavar="FILE", help="English text for the identity check")
    parser.add_argument("--eval-code-files", type=int, default=100,
                        help="Python stdlib files sampled for the code identity check (default: %(default)s)")
    parser.add_argument("--eval-max-lines", type=int, default=2000, help="lines per evaluation text (default: %(default)s)")
    parser.add_argument("--no-plot", dest="plot", action="store_false", help="do not write report.png")
    return parser


def resolve_config(args: argparse.Namespace, prog: str) -> MergeConfig:
    """The `tokenizer:` section (file, then --set, then the explicit flags) and this command's flags."""
    section = load_section(TokenizerConfig, "tokenizer", args.config, args.overrides, flags={
        "base": args.base, "mode": args.mode, "max_added": args.max_added, "hangul_nfc": args.hangul_nfc,
    })
    if section.base is None:
        print(f"{prog}: base tokenizer: Mistral-7B's tokenizer.model.v1 (mistral-common) standing in for Llama-2's; "
              "pass --base or set tokenizer.base for the real one", file=sys.stderr)
    return MergeConfig(
        add=args.add, output=args.output, tokenizer=section, script=args.script, add_special=args.add_special,
        overwrite=args.overwrite, allow_normalizer_mismatch=args.allow_normalizer_mismatch,
        eval_korean=args.eval_korean, eval_english=args.eval_english, eval_code_files=args.eval_code_files,
        eval_max_lines=args.eval_max_lines, plot=args.plot,
    )


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        config = resolve_config(args, prog)
        report = merge(config)
    except BadInput as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(family_of(config.output).merge_summary(report)))
    print("tokenizer check: " + ("; ".join(report["defects"]) or "no defects") +
          f" (details: kocpt tokenizer check {config.output} --base {config.base})")
    print(f"wrote {config.output}")
    return 0


if __name__ == "__main__":
    from stagekit.entry import run_main  # Ctrl-C and bad input: one line

    sys.exit(run_main(main))
