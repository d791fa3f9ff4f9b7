"""The tokenizer report: what the merge did and what it does to Korean, English and code.

    kocpt tokenizer report --tokenizer tok/ --base llama2/tokenizer.model \\
        --korean ko-heldout.txt --english news.en shakespeare.txt --plot report.png --sweep

Figures: vocabulary sizes and merge counts; on Korean text tokens per character and per word and the
byte-token share, before -> after; on English and code the share of lines whose ids are identical to
the base's (100% in safe mode); Hugging Face fast vs SentencePiece agreement; decode(encode(x)) == x;
example segmentations; with --sweep, tokens per character over added-vocabulary sizes.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import sysconfig
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # `python tokenizer/report.py`: import the package, not this folder's files
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np
import sentencepiece as spm
from tqdm import tqdm

from stagekit.config import add_config_arguments, load_section
from tokenizer import BadInput
from tokenizer.config import TokenizerConfig
from tokenizer.report_schema import SENTENCEPIECE, TextFigures, TokenizerReport, VocabFigures
from tokenizer.spm_model import ModelProto, is_hangul, load_model

# Strings where SentencePiece and Hugging Face tokenizers are known to part ways.
PROBES = [
    " leading space", "  two leading spaces", "trailing space ", "trailing spaces   ", "multiple   inner    spaces",
    "\tleading tab", "tab\tinside", "line\nbreak", "\n\nleading newlines", "trailing newline\n", " \n \t mixed ",
    " ", "  ", "\n", "", "emoji 😀🎉 and 👍🏽 skin tone", "digits 2023 and 3.14159 and 1,000,000",
    "Mixed 한국어 English 日本語 中文 русский", "  한국어로 시작하는 공백", "ㅋㅋㅋ ㅎㅎ ㅠㅠ", "café naïve résumé",
    "def f(x):\n    return x ** 2  # square", "한글2024년 1월", "안녕하세요!!! 😀",
]
# Not probed: text containing "<s>"/"</s>". Hugging Face parses special-token strings in text (what chat
# templates rely on), SentencePiece never does; that difference is by design on both sides.


@dataclass
class EvalTexts:
    korean: list[str] = field(default_factory=list)
    english: list[str] = field(default_factory=list)
    code_files: int = 100
    max_lines: int = 2000
    seed: int = 0


def read_lines(path: str | Path, max_lines: int) -> list[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            lines = [line.rstrip("\n") for line in handle]
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read evaluation text ({exc})") from None
    return [line for line in lines if line.strip()][:max_lines]


def stdlib_code_lines(files: int, max_lines: int, seed: int = 0) -> list[str]:
    """Lines (indentation kept) from a deterministic sample of the Python standard library's sources."""
    if files <= 0:
        return []
    root = Path(sysconfig.get_paths()["stdlib"])
    sources = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    chosen = random.Random(seed).sample(sources, min(files, len(sources)))
    lines: list[str] = []
    for path in chosen:
        try:
            lines += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (UnicodeDecodeError, OSError):
            continue
    return random.Random(seed).sample(lines, min(max_lines, len(lines)))


def figures(processor: spm.SentencePieceProcessor, lines: list[str]) -> TextFigures:
    ids = processor.encode(lines)
    return TextFigures.of(tokens=sum(len(x) for x in ids), chars=sum(len(line) for line in lines),
                          words=sum(len(line.split()) for line in lines),
                          byte_tokens=sum(processor.is_byte(i) for x in ids for i in x))


def measure(processor: spm.SentencePieceProcessor, lines: list[str]) -> dict:
    return figures(processor, lines).to_dict()


def identity(base: spm.SentencePieceProcessor, merged: spm.SentencePieceProcessor, lines: list[str]) -> dict:
    same = [a == b for a, b in zip(base.encode(lines), merged.encode(lines))]
    first = next((lines[i] for i, ok in enumerate(same) if not ok), None)
    return {"lines": len(lines), "identical": int(sum(same)), "share": round(sum(same) / max(len(lines), 1), 6),
            "first_difference": first}


def hf_agreement(hf, processor: spm.SentencePieceProcessor, lines: list[str]) -> dict:
    hf_ids = hf(lines, add_special_tokens=False)["input_ids"] if lines else []
    sp_ids = processor.encode(lines)
    agree = [a == b for a, b in zip(hf_ids, sp_ids)]
    decoded = hf.batch_decode(hf_ids) if lines else []
    round_trip = [d == line for d, line in zip(decoded, lines)]
    bad = next((i for i, ok in enumerate(agree) if not ok), None)
    return {
        "lines": len(lines), "agree": int(sum(agree)), "share": round(sum(agree) / max(len(lines), 1), 6),
        "hf_decode_roundtrip_share": round(sum(round_trip) / max(len(lines), 1), 6),
        "first_mismatch": None if bad is None else {"text": lines[bad], "sentencepiece": sp_ids[bad], "hf": hf_ids[bad]},
    }


def added_counts(base: ModelProto, merged: ModelProto) -> dict:
    base_set = {p.piece for p in base.pieces}
    new = [p.piece for p in merged.pieces if p.piece not in base_set]
    return {"base_pieces": len(base.pieces), "merged_pieces": len(merged.pieces), "added_pieces": len(new),
            "added_with_hangul": sum(any(is_hangul(c) for c in t) for t in new),
            "trainer_spec_vocab_size": merged.trainer_spec.vocab_size}


def vocab_figures(base: ModelProto, merged: ModelProto) -> VocabFigures:
    counts = added_counts(base, merged)
    return VocabFigures(base_size=counts["base_pieces"], added=counts["added_pieces"], size=counts["merged_pieces"],
                        unit="pieces", detail=counts)


def sweep(base: ModelProto, merged: ModelProto, lines: list[str], steps: int = 8) -> list[dict]:
    """Tokens per character when only the first k added pieces are kept (added pieces come in merge order)."""
    n_added = len(merged.pieces) - len(base.pieces)
    points = []
    for k in sorted({int(round(x)) for x in np.linspace(0, n_added, steps + 1)}):
        truncated = ModelProto()
        truncated.CopyFrom(merged)
        del truncated.pieces[len(base.pieces) + k:]
        truncated.trainer_spec.vocab_size = len(truncated.pieces)
        processor = spm.SentencePieceProcessor(model_proto=truncated.SerializeToString())
        points.append({"added": k, "tokens_per_char": measure(processor, lines)["tokens_per_char"]})
    return points


def build_report(tokenizer_dir: str | Path, base: ModelProto, texts: EvalTexts, merge_stats: dict | None = None,
                 do_sweep: bool = False, sweep_steps: int = 8, check_hf: bool = True, base_path: str | None = None) -> dict:
    """The report.json of a SentencePiece tokenizer directory (tokenizer/report_schema.py), as a dict."""
    return build_tokenizer_report(tokenizer_dir, base, texts, merge_stats, do_sweep, sweep_steps, check_hf,
                                  base_path).to_dict()


def build_tokenizer_report(tokenizer_dir: str | Path, base: ModelProto, texts: EvalTexts, merge_stats: dict | None = None,
                           do_sweep: bool = False, sweep_steps: int = 8, check_hf: bool = True,
                           base_path: str | None = None) -> TokenizerReport:
    tokenizer_dir = Path(tokenizer_dir)
    merged_proto = load_model(tokenizer_dir)
    merged = spm.SentencePieceProcessor(model_proto=merged_proto.SerializeToString())
    base_sp = spm.SentencePieceProcessor(model_proto=base.SerializeToString())
    korean = {str(p): read_lines(p, texts.max_lines) for p in texts.korean}
    english = {str(p): read_lines(p, texts.max_lines) for p in texts.english}
    code = stdlib_code_lines(texts.code_files, texts.max_lines, texts.seed)
    non_korean = dict(english)
    if code:
        non_korean["python-stdlib"] = code
    plain_probes = [p for p in PROBES if not any(is_hangul(c) for c in p)]

    result = TokenizerReport(
        kind=SENTENCEPIECE, tokenizer=str(tokenizer_dir), base=base_path, vocab=vocab_figures(base, merged_proto),
        merge=merge_stats,
        korean={name: {"base": figures(base_sp, lines), "merged": figures(merged, lines)} for name, lines in korean.items()},
        identity={name: identity(base_sp, merged, lines) for name, lines in
                  {**non_korean, "probes (non-Korean)": plain_probes}.items()},
        other_tokens_per_char={name: {"base": figures(base_sp, lines).tokens_per_char,
                                      "merged": figures(merged, lines).tokens_per_char}
                               for name, lines in non_korean.items()})
    report = result.extra  # this family's other figures
    everything = {**korean, **non_korean, "probes": PROBES}
    report["decode_roundtrip"] = {name: round(sum(merged.decode(ids) == line for ids, line in zip(merged.encode(lines), lines))
                                              / max(len(lines), 1), 6) for name, lines in everything.items()}
    if merged_proto.normalizer_spec.precompiled_charsmap and korean:
        nfd = {}
        for name, lines in korean.items():
            same = [a == b for a, b in zip(merged.encode([unicodedata.normalize("NFD", x) for x in lines]), merged.encode(lines))]
            nfd[name] = round(sum(same) / max(len(same), 1), 6)
        report["nfd_equals_nfc"] = nfd
    if merged_proto.normalizer_spec.precompiled_charsmap:
        # The normalizer must act the same on both sides: probe decomposed (NFD) Korean too.
        for name, lines in korean.items():
            everything[f"{name} (NFD)"] = [unicodedata.normalize("NFD", x) for x in lines]
    if check_hf:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        report["hf_class"] = type(hf).__name__
        report["hf_agreement"] = {name: hf_agreement(hf, merged, lines)
                                  for name, lines in tqdm(everything.items(), desc="HF vs SentencePiece", disable=None)}
    examples = [line[:80] for lines in korean.values() for line in lines[:3]] or [p for p in PROBES if any(is_hangul(c) for c in p)][:3]
    report["examples"] = [{"text": t, "base": base_sp.encode(t, out_type=str), "merged": merged.encode(t, out_type=str)}
                          for t in examples]
    if do_sweep and korean:
        report["sweep"] = {name: sweep(base, merged_proto, lines, sweep_steps) for name, lines in korean.items()}
    return result


def plot_report(report: dict, path: str | Path) -> None:
    """Tokens per character before/after for every evaluation text, and the sweep curve if present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {Path(k).name: (v["base"]["tokens_per_char"], v["merged"]["tokens_per_char"]) for k, v in report["korean"].items()}
    rows.update({Path(k).name: (v["base"], v["merged"]) for k, v in report.get("other_tokens_per_char", {}).items()})
    has_sweep = bool(report.get("sweep"))
    fig, axes = plt.subplots(1, 2 if has_sweep else 1, figsize=(12 if has_sweep else 7, 4.5), squeeze=False)
    ax = axes[0][0]
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [b for b, _ in rows.values()], 0.4, label="base")
    ax.bar(x + 0.2, [m for _, m in rows.values()], 0.4, label="merged")
    ax.set_xticks(x, list(rows), rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("tokens per character")
    ax.set_title("before / after the merge")
    ax.legend()
    if has_sweep:
        ax = axes[0][1]
        for name, points in report["sweep"].items():
            ax.plot([p["added"] for p in points], [p["tokens_per_char"] for p in points], marker="o", label=Path(name).name)
        ax.set_xlabel("added pieces")
        ax.set_ylabel("tokens per character")
        ax.set_title("Korean tokens per character vs added vocabulary")
        ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = Path(path).with_name(f".{Path(path).name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def summary_lines(report: dict) -> list[str]:
    vocab = report["vocab"]
    lines = [f"vocabulary: {vocab['base_pieces']:,} -> {vocab['merged_pieces']:,} pieces (+{vocab['added_pieces']:,})"]
    merge = report.get("merge") or {}
    if merge:
        lines.append("merge: mode={mode} added={added} skipped: present={skipped_already_present} "
                     "non-script={skipped_not_script} digits={skipped_digits}; unreachable found={unreachable_found} "
                     "intermediates added={intermediates_added} dropped={unreachable_dropped}".format(**merge))
    for name, row in report["korean"].items():
        b, m = row["base"], row["merged"]
        lines.append(f"{Path(name).name}: tokens/char {b['tokens_per_char']:.3f} -> {m['tokens_per_char']:.3f}, "
                     f"tokens/word {b['tokens_per_word']:.2f} -> {m['tokens_per_word']:.2f}, "
                     f"byte tokens {b['byte_token_share']:.1%} -> {m['byte_token_share']:.1%}")
    for name, row in report["identity"].items():
        lines.append(f"{Path(name).name}: {row['share']:.2%} of {row['lines']} lines identical to the base")
    for name, row in (report.get("hf_agreement") or {}).items():
        lines.append(f"HF fast == SentencePiece on {Path(name).name}: {row['share']:.2%} of {row['lines']} lines")
    return lines


def check_tokenizer_dir(path: str | Path, hf: bool) -> None:
    """A SentencePiece tokenizer directory this report can read, or one line saying what it is and what reads it."""
    path = Path(path)
    if not path.is_dir():
        raise BadInput(f"{path}: not a tokenizer directory (expected a directory with tokenizer.model, "
                       "as tokenizer/merge.py writes)")
    if not (path / "tokenizer.model").is_file():
        if (path / "tokenizer.json").is_file():
            raise BadInput(f"{path}: a tokenizer.json without tokenizer.model (a byte-level BPE): this report reads "
                           "SentencePiece tokenizers; a byte-level merge writes its report.json itself, and "
                           f"`kocpt tokenizer check {path}` checks it")
        raise BadInput(f"{path}: no tokenizer.model (not a tokenizer directory; give the directory "
                       "tokenizer/merge.py wrote)")
    if hf and not (path / "tokenizer.json").is_file():
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
