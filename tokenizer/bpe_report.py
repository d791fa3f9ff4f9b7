"""The report of a byte-level BPE merge (tokenizer/report_schema.py's `TokenizerReport`), from the checks the
merge runs on its output (tokenizer/bpe_check.py): Korean tokens per character before/after, the identity of
text without Hangul with the base's ids, AutoTokenizer's agreement, the added tokens' reachability.
Written by the merge (tokenizer/bpe_write.py) and by `kocpt tokenizer report` (tokenizer/report.py).
"""

from __future__ import annotations

from pathlib import Path

from tokenizer.bpe_check import check_directory, next_id, read_spec
from tokenizer.bpe_merge import HANGUL
from tokenizer.comparison import PROBES, read_lines, stdlib_code_lines
from tokenizer.report_schema import BYTE_LEVEL, TokenizerReport, VocabFigures


def report_texts(korean: list[str], english: list[str], code_files: int, max_lines: int) -> dict[str, list[str]]:
    """check_directory's texts: "korean:NAME" -> Korean lines (figures); NAME -> text without Hangul (identity)."""
    texts = {f"korean:{p}": read_lines(p, max_lines) for p in korean}
    texts.update({p: read_lines(p, max_lines) for p in english})
    code = stdlib_code_lines(code_files, max_lines)
    if code:
        texts["python-stdlib"] = code
    # The identity promise is for text without Hangul; the Korean probes are checked for round trips.
    texts["edge strings"] = [p for p in PROBES if p and not HANGUL.search(p)]
    return texts


def build_report(directory: Path, base_json: Path, base_spec: dict, texts: dict[str, list[str]],
                 merge: dict | None = None) -> TokenizerReport:
    """`directory`'s tokenizer.json against its base's; ids from the base's end are the added ones (Korean
    merges, then the added special tokens)."""
    first_added_id = next_id(base_spec)
    checked = check_directory(directory, base_spec, texts, first_added_id)
    spec = read_spec(Path(directory) / "tokenizer.json")
    total = next_id(spec)
    special = sum(1 for t in spec.get("added_tokens") or [] if t["id"] >= first_added_id and t.get("special"))
    return TokenizerReport(
        kind=BYTE_LEVEL, tokenizer=str(directory), base=str(base_json),
        vocab=VocabFigures(base_size=first_added_id, added=total - first_added_id, size=total, unit="ids",
                           detail={"base_tokens": first_added_id, "added_tokens": total - first_added_id - special,
                                   "added_special": special, "total": total}),
        merge=merge, korean=checked["korean"], identity=checked["identity"],
        other_tokens_per_char=checked["other_tokens_per_char"], defects=checked["defects"],
        extra={"autotokenizer": checked["autotokenizer"], "reachable": checked["reachable"]})


def summary_lines(report: dict) -> list[str]:
    vocab, merge = report["vocab"], report.get("merge")
    lines = [f"vocabulary: {vocab['base_tokens']:,} -> {vocab['total']:,} ids (+{vocab['added_tokens']:,} Korean merges"
             f"{', +%d special' % vocab['added_special'] if vocab['added_special'] else ''})"]
    if merge:
        lines.append("merge: learned={learned_merges} added={added} skipped: present={skipped_already_present} "
                     "not-Hangul={skipped_not_script} digits={skipped_digits} missing-part={skipped_missing_part} "
                     "over-max={skipped_max_added}; unreachable dropped={unreachable_dropped}".format(**merge))
    for name, row in report["korean"].items():
        b, m = row["base"], row["merged"]
        lines.append(f"{Path(name).name}: tokens/char {b['tokens_per_char']:.3f} -> {m['tokens_per_char']:.3f}, "
                     f"tokens/word {b['tokens_per_word']:.2f} -> {m['tokens_per_word']:.2f}")
    for name, row in report["identity"].items():
        lines.append(f"{Path(name).name}: {row['share']:.2%} of {row['lines']} lines identical to the base")
    auto = report["autotokenizer"]
    lines.append(f"AutoTokenizer ({auto['class']}): {auto['agree_on']}/{auto['strings']} strings as tokenizer.json; "
                 f"special tokens {', '.join(auto['special_tokens'])}; chat template {'kept' if auto['chat_template'] else 'none'}")
    return lines

