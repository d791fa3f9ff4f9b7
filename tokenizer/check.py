"""Check any merged tokenizer directory, of either family, and exit 1 on any defect (2 on bad input).

    kocpt tokenizer check tok/ --base ../shared/data/llama2-tokenizer --texts ko.txt --json check.json
    python tokenizer/check.py tok/

A SentencePiece directory (`tokenizer.model` + Hugging Face files: ours, Chinese-LLaMA's, anyone's) gets
tokenizer/spm_check.py: ids of every implementation vs SentencePiece, unreachable and over-scored pieces,
byte fallback, and with `--base` English/code identity. A byte-level BPE directory (tokenizer.json only)
gets the checks the byte-level merge runs on its own output (tokenizer/bpe_check.py): AutoTokenizer vs
tokenizer.json, round trips, and with `--base` the base's ids kept and every added token reachable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stagekit.config import add_config_arguments, load_section
from stagekit.outputs import write_file_atomic
from tokenizer import BadInput
from tokenizer.config import TokenizerConfig
from tokenizer.family import family_of


def check(directory: str | Path, base: str | Path | None = None, text_files: list[str] = (), code_files: int = 20,
          max_lines: int = 2000, gguf: str | None = None) -> dict:
    """The report of `directory`'s family's check; the base must be of the same family."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BadInput(f"{directory}: not a tokenizer directory")
    family = family_of(directory)
    if base and family_of(base) is not family:
        raise BadInput(f"--base {base}: not a {family.name} {family.file_name} (it is {family_of(base).name}), as "
                       f"{directory} is: give the tokenizer it was merged into")
    return family.check(directory, base, list(text_files), code_files, max_lines, gguf)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Check a merged tokenizer directory for id disagreements "
                                     "and vocabulary defects; exit 1 when it finds one.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("directory", metavar="DIR", help="tokenizer directory: tokenizer.model + Hugging Face files, "
                        "or a byte-level BPE tokenizer.json (SmolLM2, Llama-3, Qwen2.5 and their merges)")
    parser.add_argument("--base", help="the tokenizer it extends (file or directory): score and identity checks "
                        "(default: tokenizer.base of --config, if set)")
    add_config_arguments(parser, ("tokenizer",), reads="tokenizer.base (the default of --base)")
    parser.add_argument("--texts", action="append", default=[], metavar="FILE", help="texts to compare, a line each (repeatable)")
    parser.add_argument("--max-lines", type=int, default=2000, help="lines per text file")
    parser.add_argument("--code-files", type=int, default=20, help="Python stdlib files for the identity check (with --base)")
    parser.add_argument("--gguf", metavar="FILE", help="a GGUF with this tokenizer: compare llama.cpp's ids too")
    parser.add_argument("--json", metavar="FILE", help="write the full report here")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        for path in args.texts + ([args.gguf] if args.gguf else []):
            if not Path(path).is_file():
                raise BadInput(f"{path}: file not found")
        if args.max_lines < 1 or args.code_files < 0:
            raise BadInput("--max-lines must be >= 1 and --code-files >= 0")
        section = load_section(TokenizerConfig, "tokenizer", args.config, args.overrides, flags={"base": args.base})
        report = check(args.directory, section.base, args.texts, args.code_files, args.max_lines, args.gguf)
    except BadInput as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(family_of(args.directory).check_summary(report)))
    if args.json:
        write_file_atomic(args.json, (json.dumps(report, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
    return 1 if report["defects"] else 0


if __name__ == "__main__":
    from stagekit.entry import run_main  # Ctrl-C and bad input: one line

    sys.exit(run_main(main))
