"""What a merged tokenizer is compared with its base on, in either family: the evaluation texts, the probe
strings, and the one identity figure (text without Korean must keep the base's ids).

The merges' reports (tokenizer/spm_report.py, tokenizer/bpe_report.py), `kocpt tokenizer check`
(tokenizer/spm_check.py, tokenizer/bpe_check.py) and the GGUF check read these, so every family is
measured on the same strings.
"""

from __future__ import annotations

import random
import sysconfig
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from tokenizer import BadInput

# Strings where SentencePiece and Hugging Face tokenizers are known to part ways (the reports' edge strings).
PROBES = [
    " leading space", "  two leading spaces", "trailing space ", "trailing spaces   ", "multiple   inner    spaces",
    "\tleading tab", "tab\tinside", "line\nbreak", "\n\nleading newlines", "trailing newline\n", " \n \t mixed ",
    " ", "  ", "\n", "", "emoji 😀🎉 and 👍🏽 skin tone", "digits 2023 and 3.14159 and 1,000,000",
    "Mixed 한국어 English 日本語 中文 русский", "  한국어로 시작하는 공백", "ㅋㅋㅋ ㅎㅎ ㅠㅠ", "café naïve résumé",
    "def f(x):\n    return x ** 2  # square", "한글2024년 1월", "안녕하세요!!! 😀",
]
# Not probed: text containing "<s>"/"</s>". Hugging Face parses special-token strings in text (what chat
# templates rely on), SentencePiece never does; that difference is by design on both sides.

_KOREAN = ["안녕하세요, 반갑습니다.", "대한민국의 수도는 서울입니다.", "값을 읽고 닭을 삶았다", "ㅋㅋㅋ ㅎㅎ ㅠㅠ"]
# The checks' probes, by kind (`kocpt tokenizer check`, `kocpt export gguf`'s llama.cpp comparison).
PROBES_BY_KIND: dict[str, list[str]] = {
    "korean": _KOREAN + ["한국어 English 日本語 혼용 문장"],
    "english": ["The quick brown fox jumps over the lazy dog.", "Hello world", "It's 3.14 o'clock, isn't it?",
                "To be continued................ ~~~~~~~~ !!!!"],
    "code": ["def f(x):\n    return x ** 2  # square", "for (int i = 0; i < n; ++i) { sum += a[i]; }",
             "if __name__ == \"__main__\":\n\tmain()"],
    "leading spaces": [" hi", "  two leading", "   three", " 한국어 앞 공백"],
    "double spaces": ["x  y", "한국어  두  칸", "a   b    c", "trailing  "],
    "tabs": ["\tTab", "a\tb\t\tc", "\t\t한국어"],
    "emoji": ["emoji 😀 👍🏽 🇰🇷 👨‍👩‍👧", "안녕하세요!!! 😀"],
    "nfd hangul": [unicodedata.normalize("NFD", t) for t in _KOREAN[:3]],
}
NON_KOREAN_KINDS = ("english", "code", "leading spaces", "double spaces", "tabs")


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


def identity(base_ids: list[list[int]], merged_ids: list[list[int]], lines: list[str], *, listed: bool = False) -> dict:
    """How many `lines` get the same ids from the merged tokenizer as from its base (each family encodes);
    `listed`: also every differing line with both id lists (the check's detail)."""
    same = [list(a) == list(b) for a, b in zip(base_ids, merged_ids)]
    first = next((lines[i] for i, ok in enumerate(same) if not ok), None)
    row = {"lines": len(lines), "identical": int(sum(same)), "share": round(sum(same) / max(len(lines), 1), 6),
           "first_difference": first}
    if listed:
        row["differing"] = [{"text": line, "base": list(a), "merged": list(b)}
                            for line, a, b, ok in zip(lines, base_ids, merged_ids, same) if not ok]
    return row
