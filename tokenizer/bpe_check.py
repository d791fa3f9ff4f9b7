"""The checks of a byte-level BPE tokenizer directory (a `tokenizer.json`, no `tokenizer.model`): the ones the
byte-level merge runs on its output before publishing it (tokenizer/bpe_write.py), and the ones
`kocpt tokenizer check DIR` runs on any such directory (tokenizer/check.py, through tokenizer/byte_level_family.py).

- AutoTokenizer loads the directory and gives the same ids as `tokenizers` on tokenizer.json, and as many
  tokens; decode(encode(x)) == x on the probes and the given texts;
- with the base (`--base`): every base token keeps its id, and text without Hangul gets the base's ids;
- every added token (ids from the base's end, or from `merge.first_added_id` of the directory's report.json)
  is one BPE produces from its own bytes (reachable).
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizer import BadInput
from tokenizer.bpe_merge import _CHAR_TO_BYTE, HANGUL, merges_only
from tokenizer.comparison import NON_KOREAN_KINDS, PROBES, PROBES_BY_KIND, identity, read_lines, stdlib_code_lines
from tokenizer.report_schema import BYTE_LEVEL, TextFigures


def token_figures(tokenizer, lines: list[str]) -> TextFigures:
    """Tokens per character and per word, and the share of tokens that stand for one byte."""
    encodings = tokenizer.encode_batch(lines, add_special_tokens=False)
    return TextFigures.of(tokens=sum(len(e.ids) for e in encodings), chars=sum(len(line) for line in lines),
                          words=sum(len(line.split()) for line in lines),
                          byte_tokens=sum(len(t) == 1 and t in _CHAR_TO_BYTE for e in encodings for t in e.tokens))


def next_id(spec: dict) -> int:
    """One past the largest id of a tokenizer.json (its model's vocabulary and its added tokens)."""
    ids = [*spec["model"]["vocab"].values(), *(t["id"] for t in spec.get("added_tokens") or [])]
    return 1 + max(ids, default=-1)


def read_spec(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: not a readable tokenizer.json ({exc})") from None


def check_directory(directory: Path, base_spec: dict | None, texts: dict[str, list[str]],
                    first_added_id: int | None = None) -> dict:
    """The checks above. `texts`: "korean:NAME" -> Korean lines (figures only); NAME -> text without Hangul
    (identity with the base). Returns the figures, "defects" and "notes"."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    directory = Path(directory)
    merged_spec = read_spec(directory / "tokenizer.json")
    merged = Tokenizer.from_str(json.dumps(merged_spec))
    base = Tokenizer.from_str(json.dumps(base_spec)) if base_spec is not None else None
    defects, notes = [], []
    merged_vocab = merged.get_vocab(with_added_tokens=True)
    if base is not None:
        moved = [t for t, i in base.get_vocab(with_added_tokens=True).items() if merged_vocab.get(t) != i]
        if moved:
            defects.append(f"{len(moved)} base tokens changed id (e.g. {moved[0]!r})")
        if first_added_id is None:
            first_added_id = next_id(base_spec)
    report: dict = {"korean": {}, "identity": {}, "other_tokens_per_char": {}}
    if first_added_id is not None:
        model = merges_only(merged_spec)
        added = [t for t, i in merged_spec["model"]["vocab"].items() if i >= first_added_id]
        unreachable = [t for t in added if [x.value for x in model.tokenize(t)] != [t]]
        if unreachable:
            defects.append(f"{len(unreachable)} added tokens unreachable (e.g. {unreachable[0]!r})")
        report["reachable"] = {"first_added_id": first_added_id, "added": len(added), "unreachable": len(unreachable)}
    else:
        notes.append("added tokens' reachability: not checked (pass --base, the tokenizer it was merged into)")
    for name, lines in texts.items():
        if name.startswith("korean:"):
            report["korean"][name[7:]] = {"base": token_figures(base, lines) if base is not None else None,
                                          "merged": token_figures(merged, lines)}
        elif base is not None:
            row = report["identity"][name] = identity(
                [e.ids for e in base.encode_batch(lines, add_special_tokens=False)],
                [e.ids for e in merged.encode_batch(lines, add_special_tokens=False)], lines)
            report["other_tokens_per_char"][name] = {"base": token_figures(base, lines).tokens_per_char,
                                                     "merged": token_figures(merged, lines).tokens_per_char}
            if row["share"] < 1:
                defects.append(f"{name}: {row['lines'] - row['identical']} lines tokenize differently "
                               f"(first: {row['first_difference']!r})")
    if base is None:
        notes.append("English/code identity with the base: not checked (pass --base)")
    try:
        hf = AutoTokenizer.from_pretrained(str(directory))
    except (OSError, ValueError) as exc:
        raise BadInput(f"{directory}: AutoTokenizer cannot load it ({str(exc).splitlines()[0]})") from None
    sample = PROBES + [line for lines in texts.values() for line in lines[:200]]
    hf_ids = hf(sample, add_special_tokens=False)["input_ids"]
    disagree = [s for s, ids in zip(sample, hf_ids) if ids != merged.encode(s, add_special_tokens=False).ids]
    if disagree:
        defects.append(f"AutoTokenizer differs from tokenizer.json on {len(disagree)} strings (first: {disagree[0]!r})")
    broken = [s for s, ids in zip(sample, hf_ids) if hf.decode(ids) != s]
    if broken:
        defects.append(f"decode(encode(x)) != x on {len(broken)} strings (first: {broken[0]!r})")
    if len(hf) != len(merged_vocab):
        defects.append(f"AutoTokenizer has {len(hf)} tokens, tokenizer.json {len(merged_vocab)}")
    report["autotokenizer"] = {"class": type(hf).__name__, "tokens": len(hf), "agree_on": len(sample) - len(disagree),
                               "strings": len(sample), "special_tokens": hf.all_special_tokens,
                               "chat_template": bool(hf.chat_template)}
    report["defects"] = defects
    report["notes"] = notes
    return report


def check_byte_level(directory: str | Path, base_json: Path | None = None, text_files: list[str] = (),
                     code_files: int = 20, max_lines: int = 2000) -> dict:
    """`kocpt tokenizer check DIR` on a byte-level directory: the merge's own checks (see the module doc) on
    the checks' probes (tokenizer/comparison.py) and the texts; `base_json`: the base's tokenizer.json."""
    directory = Path(directory)
    base_spec = read_spec(base_json) if base_json else None
    first_added_id = None
    recorded = directory / "report.json"
    if base_spec is None and recorded.is_file():  # our merge records where its ids start
        try:
            first_added_id = (json.loads(recorded.read_text(encoding="utf-8")).get("merge") or {}).get("first_added_id")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            first_added_id = None
    texts: dict[str, list[str]] = {"korean:probes": [t for kind, lines in PROBES_BY_KIND.items() for t in lines
                                                     if HANGUL.search(t)]}
    texts.update({kind: [t for t in PROBES_BY_KIND[kind] if not HANGUL.search(t)] for kind in NON_KOREAN_KINDS})
    code = stdlib_code_lines(code_files, max_lines) if base_spec is not None else []
    if code:
        texts["python-stdlib"] = code
    for file in text_files:
        lines = read_lines(file, max_lines)
        korean = [line for line in lines if HANGUL.search(line)]
        if korean:
            texts[f"korean:{file}"] = korean
        if len(korean) < len(lines):
            texts[str(file)] = [line for line in lines if not HANGUL.search(line)]
    report = check_directory(directory, base_spec, texts, first_added_id)
    report["korean"] = {name: {side: figures.to_dict() if figures else None for side, figures in row.items()}
                        for name, row in report["korean"].items()}
    spec = read_spec(directory / "tokenizer.json")
    return {"tokenizer": str(directory), "base": str(base_json) if base_json else None, "kind": BYTE_LEVEL,
            "tokens": next_id(spec), **report}


def summary_lines(report: dict) -> list[str]:
    lines = [f"{report['tokenizer']}: byte-level BPE, {report['tokens']:,} ids"]
    auto = report["autotokenizer"]
    lines.append(f"AutoTokenizer ({auto['class']}) == tokenizer.json on {auto['agree_on']} of {auto['strings']} strings")
    reachable = report.get("reachable")
    if reachable:
        lines.append(f"unreachable added tokens: {reachable['unreachable']} of {reachable['added']} "
                     f"(ids from {reachable['first_added_id']:,})")
    for name, row in report["identity"].items():
        lines.append(f"{Path(name).name}: {row['share']:.2%} of {row['lines']} lines identical to the base")
    lines += report["notes"]
    lines.append("defects: " + ("; ".join(report["defects"]) if report["defects"] else "none"))
    return lines
