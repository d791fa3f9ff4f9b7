"""Merge Korean SentencePiece pieces into Llama-2's tokenizer.

    python tokenizer/merge.py --base ../shared/data/llama2-tokenizer --add ko16k.model --output tok/
    kocpt tokenizer merge --base llama2/tokenizer.model --add ko16k.model --output tok/ --hangul-nfc
    kocpt tokenizer merge --add ko/ko.model --output tok/ --config configs/demo.yaml   # tokenizer.base, .max_added, ...

`safe` mode (default) adds only pieces absent from the base that contain Hangul and no digit, scored
strictly below every base score in the added model's own order, so BPE applies every Llama merge
before any Korean one and no non-Korean text changes ids. Every added piece is checked to be
producible by BPE; missing intermediates are added, the rest dropped and counted. The base's
normalizer and trainer settings are kept; `trainer_spec.vocab_size` is set to the real size.

A byte-level BPE base (SmolLM2, Llama-3, Qwen2.5: a tokenizer.json or its HF directory) takes the
PREFIX.json of `tokenizer/train.py --base BASE` instead; see tokenizer/bpe_merge.py:

    python tokenizer/merge.py --base smollm2/ --add ko24k.json --output tok/ --max-added 16000

`chinese-llama` mode reproduces Chinese-LLaMA's `merge_tokenizers.py` (every new piece appended with
score 0) for comparison only.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # `python tokenizer/merge.py`: import the package, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])


from stagekit.config import add_config_arguments, load_section
from stagekit.outputs import check_output, staged_directory, write_file_atomic
from tokenizer import BadInput
from tokenizer.bpe_merge import byte_level_json
from tokenizer.config import TokenizerConfig
from tokenizer.hf_export import write_hf_files
from tokenizer.merge_checks import (
    check_added,
    check_added_size,
    check_added_type,
    check_adds_something,
    check_base,
)
from tokenizer.piece_merge import (  # noqa: F401  (merge_safe: the library entry)
    SCRIPTS,
    MergeStats,
    add_special,
    merge_chinese_llama,
    merge_safe,
)
from tokenizer.spm_model import (
    ModelProto,
    load_model,
    resolve_model_path,
)

MODES = ("safe", "chinese-llama")
STAGE = "tokenizer merge"  # names this stage's outputs (stagekit.outputs)
LICENSE_FILES = ("LICENSE", "LICENSE.txt", "USE_POLICY.md")


# ---------------------------------------------------------------------------------------------- command

@dataclass
class MergeConfig:
    base: str
    add: list[str]
    output: str
    mode: str = "safe"
    script: str = "hangul"
    max_added: int = 0
    hangul_nfc: bool = False
    add_special: list[str] = field(default_factory=list)
    overwrite: bool = False
    allow_normalizer_mismatch: bool = False
    eval_korean: list[str] = field(default_factory=list)
    eval_english: list[str] = field(default_factory=list)
    eval_code_files: int = 100
    eval_max_lines: int = 2000
    plot: bool = True

    def output_rule(self) -> dict:
        """The stage and the inputs its output must stay clear of (stagekit.outputs)."""
        return {"stage": STAGE, "overwrite": self.overwrite,
                "inputs": {"--base": self.base, "--add": self.add, "--eval-korean": self.eval_korean,
                           "--eval-english": self.eval_english}}

    def validate(self) -> None:
        if self.mode not in MODES:
            raise BadInput(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.script not in SCRIPTS:
            raise BadInput(f"--script must be one of {', '.join(SCRIPTS)}, got {self.script!r}")
        if self.max_added < 0 or self.eval_code_files < 0 or self.eval_max_lines < 1:
            raise BadInput("--max-added and --eval-code-files must be >= 0, --eval-max-lines >= 1")
        if self.mode == "chinese-llama" and (self.hangul_nfc or self.max_added):
            raise BadInput("--hangul-nfc and --max-added are safe-mode options")
        check_output(self.output, **self.output_rule())
        for path in self.eval_korean + self.eval_english:
            if not Path(path).is_file():
                raise BadInput(f"{path}: evaluation text not found")


def merge_models(config: MergeConfig) -> tuple[ModelProto, MergeStats, ModelProto]:
    """Load and check the inputs, merge; returns (merged, stats, base)."""
    config.validate()
    started = time.perf_counter()
    base = load_model(config.base)
    check_base(base, resolve_model_path(config.base))
    added = []
    for path in config.add:
        model = load_model(path)
        check_added_size(model, path, base, resolve_model_path(config.base))
        if config.mode == "safe" and not config.allow_normalizer_mismatch:
            check_added(model, path, base)
        check_added_type(model, path, config.mode)
        added.append(model)
    if config.mode == "safe":
        merged, stats = merge_safe(base, added, config.script, config.max_added, config.hangul_nfc)
    else:
        merged, stats = merge_chinese_llama(base, added)
    check_adds_something(stats, config.add)
    if config.add_special:
        add_special(merged, config.add_special, stats)
    stats.seconds = round(time.perf_counter() - started, 2)
    return merged, stats, base


def _say(line: str) -> None:
    print(f"merge: {line}", file=sys.stderr)


def write_tokenizer_dir(config: MergeConfig, merged: ModelProto, stats: MergeStats, base: ModelProto) -> dict:
    """Write everything into a temporary sibling directory, verify, then rename into place."""
    from tokenizer.check import check as check_tokenizer  # heavy imports (transformers)
    from tokenizer.check import compact as compact_check
    from tokenizer.report import EvalTexts, build_tokenizer_report, plot_report

    output = Path(config.output).resolve()
    with staged_directory(output, **config.output_rule(), say=_say) as staging:
        write_file_atomic(staging / "tokenizer.model", merged.SerializeToString())
        write_hf_files(merged, staging)
        base_dir = resolve_model_path(config.base).parent
        for name in LICENSE_FILES:
            if (base_dir / name).is_file():
                shutil.copyfile(base_dir / name, staging / name)
        texts = EvalTexts(korean=config.eval_korean, english=config.eval_english,
                          code_files=config.eval_code_files, max_lines=config.eval_max_lines)
        result = build_tokenizer_report(staging, base, texts, merge_stats=stats.__dict__, base_path=str(config.base))
        result.tokenizer = str(output)  # the directory it is renamed to below, not the staging one
        checked = check_tokenizer(staging, resolve_model_path(config.base), config.eval_korean + config.eval_english,
                                  code_files=config.eval_code_files, max_lines=config.eval_max_lines)
        result.extra["check"] = compact_check(checked)
        result.defects = list(checked["defects"])
        result.write(staging / "report.json")
        report = result.to_dict()
        if config.plot and report["korean"]:
            plot_report(report, staging / "report.png")
    return report


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
    """The `tokenizer:` section (file, then --set), then the explicit flags."""
    section = load_section(TokenizerConfig, "tokenizer", args.config, args.overrides, flags={
        "base": args.base, "mode": args.mode, "max_added": args.max_added, "hangul_nfc": args.hangul_nfc,
    })
    if section.base is None:
        print(f"{prog}: base tokenizer: Mistral-7B's tokenizer.model.v1 (mistral-common) standing in for Llama-2's; "
              "pass --base or set tokenizer.base for the real one", file=sys.stderr)
    return MergeConfig(
        base=str(section.base_model()), add=args.add, output=args.output, mode=section.mode, script=args.script,
        max_added=section.max_added, hangul_nfc=section.hangul_nfc, add_special=args.add_special,
        overwrite=args.overwrite, allow_normalizer_mismatch=args.allow_normalizer_mismatch,
        eval_korean=args.eval_korean, eval_english=args.eval_english, eval_code_files=args.eval_code_files,
        eval_max_lines=args.eval_max_lines, plot=args.plot,
    )


def _merge_byte_level(config: MergeConfig, base_json: Path) -> int:
    from tokenizer.bpe_write import summary_lines, write_byte_level_dir

    config.validate()
    report = write_byte_level_dir(config, base_json)
    print("\n".join(summary_lines(report)))
    print("tokenizer check: " + ("; ".join(report["defects"]) or "no defects"))
    if config.plot:
        print("report.png: not drawn for a byte-level base (figures in report.json)")
    print(f"wrote {config.output}")
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        config = resolve_config(args, prog)
        base_json = byte_level_json(config.base)
        if base_json is not None:
            return _merge_byte_level(config, base_json)
        merged, stats, base = merge_models(config)
        report = write_tokenizer_dir(config, merged, stats, base)
    except BadInput as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    from tokenizer.report import summary_lines

    print("\n".join(summary_lines(report)))
    print("tokenizer check: " + ("; ".join(report["check"]["defects"]) or "no defects") +
          f" (details: kocpt tokenizer check {config.output} --base {config.base})")
    print(f"wrote {config.output}")
    return 0


if __name__ == "__main__":
    from stagekit.entry import run_main  # Ctrl-C and bad input: one line

    sys.exit(run_main(main))
