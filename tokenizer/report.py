"""`kocpt tokenizer report`: compare a merged SentencePiece tokenizer with its base (tokenizer/spm_report.py
writes the figures). A byte-level merge writes its report.json itself (tokenizer/bpe_write.py).

    kocpt tokenizer report --tokenizer tok/ --base llama2/tokenizer.model \\
        --korean ko-heldout.txt --english news.en shakespeare.txt --plot report.png --sweep
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stagekit.config import add_config_arguments, load_section
from tokenizer import BadInput
from tokenizer.comparison import EvalTexts
from tokenizer.config import TokenizerConfig
from tokenizer.family import SENTENCEPIECE, family_of
from tokenizer.report_plot import plot_report
from tokenizer.spm_model import load_model
from tokenizer.spm_report import build_report, summary_lines


def check_tokenizer_dir(path: str | Path, hf: bool) -> None:
    """A SentencePiece tokenizer directory this report can read, or one line saying what it is and what reads it."""
    path = Path(path)
    if not path.is_dir():
        raise BadInput(f"{path}: not a tokenizer directory (expected a directory with tokenizer.model, "
                       "as tokenizer/merge.py writes)")
    family = family_of(path)
    if family.name != SENTENCEPIECE:
        raise BadInput(f"{path}: a {family.name} tokenizer: this report reads SentencePiece tokenizers; a byte-level "
                       f"merge writes its report.json itself, and `kocpt tokenizer check {path}` checks it")
    if hf and not family.has_hf_files(path):
        raise BadInput(f"{path}: no tokenizer.json (pass --no-hf to skip the Hugging Face check)")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Compare a merged tokenizer with its base.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--tokenizer", required=True, help="merged tokenizer directory (tokenizer.model + tokenizer.json)")
    parser.add_argument("--base", help="the base tokenizer.model or a directory holding one (default: tokenizer.base of "
                        "--config; when that is null too, Mistral-7B's tokenizer.model.v1, the merge's own stand-in)")
    add_config_arguments(parser, ("tokenizer",), reads="tokenizer.base (the default of --base)")
    parser.add_argument("--korean", nargs="+", default=[], metavar="FILE", help="Korean held-out texts")
    parser.add_argument("--english", nargs="+", default=[], metavar="FILE", help="English texts (identity check)")
    parser.add_argument("--code-files", type=int, default=100, help="Python stdlib files sampled (identity check)")
    parser.add_argument("--max-lines", type=int, default=2000, help="lines per text")
    parser.add_argument("--output", metavar="JSON", help="write the report here (default: print only)")
    parser.add_argument("--plot", metavar="PNG", help="write the tokens-per-character plot here")
    parser.add_argument("--sweep", action="store_true", help="tokens per character over added-vocabulary sizes")
    parser.add_argument("--sweep-steps", type=int, default=8)
    parser.add_argument("--no-hf", dest="hf", action="store_false", help="skip the Hugging Face agreement check")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        check_tokenizer_dir(args.tokenizer, args.hf)
        for path in args.korean + args.english:
            if not Path(path).is_file():
                raise BadInput(f"{path}: evaluation text not found")
        section = load_section(TokenizerConfig, "tokenizer", args.config, args.overrides, flags={"base": args.base})
        if section.base is None:
            print(f"{prog}: base tokenizer: Mistral-7B's tokenizer.model.v1 (mistral-common), the merge's stand-in "
                  "for Llama-2's; pass --base or set tokenizer.base for another", file=sys.stderr)
        base_path = section.base_model()
        base = load_model(base_path)
        texts = EvalTexts(korean=args.korean, english=args.english, code_files=args.code_files, max_lines=args.max_lines)
        report = build_report(args.tokenizer, base, texts, do_sweep=args.sweep, sweep_steps=args.sweep_steps, check_hf=args.hf,
                              base_path=str(base_path))
    except BadInput as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(report)))
    if args.output:
        Path(args.output).write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if args.plot:
        plot_report(report, args.plot)
    return 0


if __name__ == "__main__":
    from stagekit.entry import run_main  # Ctrl-C and bad input: one line

    sys.exit(run_main(main))
