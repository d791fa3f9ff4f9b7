"""`kocpt tokenizer report`: compare a merged tokenizer directory, of either family, with its base: the report
its merge writes (tokenizer/report_schema.py), for a directory made elsewhere or on other texts.

    kocpt tokenizer report --tokenizer tok/ --base llama2/tokenizer.model \\
        --korean ko-heldout.txt --english news.en shakespeare.txt --plot report.png --sweep

The figures are the family's (tokenizer/spm_report.py, tokenizer/bpe_report.py): Korean tokens per
character and per word before -> after, the share of English/code lines whose ids are the base's, and the
family's own checks (Hugging Face agreement and the sweep for SentencePiece; AutoTokenizer agreement and
reachability for byte-level BPE).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stagekit.config import add_config_arguments, load_section
from stagekit.outputs import write_file_atomic
from tokenizer import BadInput
from tokenizer.comparison import EvalTexts
from tokenizer.config import TokenizerConfig
from tokenizer.family import family_of
from tokenizer.report_plot import plot_report


def tokenizer_family(path: str | Path, base: Path, hf: bool):
    """The family of a tokenizer directory this report can read (its base of the same family), or one line
    saying what is wrong."""
    path = Path(path)
    if not path.is_dir():
        raise BadInput(f"{path}: not a tokenizer directory (expected the directory tokenizer/merge.py writes)")
    family = family_of(path)
    if family_of(base) is not family:
        raise BadInput(f"--base {base}: not a {family.name} {family.file_name} (it is {family_of(base).name}), as "
                       f"{path} is: give the tokenizer it was merged into")
    if hf and not family.has_hf_files(path):
        raise BadInput(f"{path}: no tokenizer.json (pass --no-hf to skip the Hugging Face check)")
    return family


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Compare a merged tokenizer with its base.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--tokenizer", required=True, help="merged tokenizer directory (tokenizer.model + tokenizer.json, "
                        "or a byte-level BPE tokenizer.json)")
    parser.add_argument("--base", help="the tokenizer it was merged into, of the same family (default: tokenizer.base of "
                        "--config; when that is null too, Mistral-7B's tokenizer.model.v1, the merge's own stand-in)")
    add_config_arguments(parser, ("tokenizer",), reads="tokenizer.base (the default of --base)")
    parser.add_argument("--korean", nargs="+", default=[], metavar="FILE", help="Korean held-out texts")
    parser.add_argument("--english", nargs="+", default=[], metavar="FILE", help="English texts (identity check)")
    parser.add_argument("--code-files", type=int, default=100, help="Python stdlib files sampled (identity check)")
    parser.add_argument("--max-lines", type=int, default=2000, help="lines per text")
    parser.add_argument("--output", metavar="JSON", help="write the report here (default: print only)")
    parser.add_argument("--plot", metavar="PNG", help="write the tokens-per-character plot here")
    parser.add_argument("--sweep", action="store_true", help="tokens per character over added-vocabulary sizes "
                        "(SentencePiece)")
    parser.add_argument("--sweep-steps", type=int, default=8)
    parser.add_argument("--no-hf", dest="hf", action="store_false", help="skip the Hugging Face agreement check "
                        "(SentencePiece)")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        for path in args.korean + args.english:
            if not Path(path).is_file():
                raise BadInput(f"{path}: evaluation text not found")
        section = load_section(TokenizerConfig, "tokenizer", args.config, args.overrides, flags={"base": args.base})
        if section.base is None:
            print(f"{prog}: base tokenizer: Mistral-7B's tokenizer.model.v1 (mistral-common), the merge's stand-in "
                  "for Llama-2's; pass --base or set tokenizer.base for another", file=sys.stderr)
        base = section.base_model()
        family = tokenizer_family(args.tokenizer, base, args.hf)
        texts = EvalTexts(korean=args.korean, english=args.english, code_files=args.code_files, max_lines=args.max_lines)
        report = family.report(Path(args.tokenizer), base, texts, sweep_steps=args.sweep_steps if args.sweep else 0,
                               check_hf=args.hf).to_dict()
    except BadInput as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(family.merge_summary(report)))
    if args.output:
        write_file_atomic(args.output, (json.dumps(report, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
    if args.plot:
        plot_report(report, args.plot)
    return 0


if __name__ == "__main__":
    from stagekit.entry import run_main  # Ctrl-C and bad input: one line

    sys.exit(run_main(main))
