"""The one schema of a tokenizer directory's `report.json`, for both tokenizer families.

Written by the SentencePiece merge (tokenizer/spm_merge.py through tokenizer/spm_report.py, and `kocpt tokenizer
report --output`) and by the byte-level merge (tokenizer/bpe_report.py); read by `kocpt eval
--tokenizer-report` (evaluation/report.py) through `TokenizerReport.from_dict`, which also reads the
reports both families wrote before this schema (no `schema` key).

    {
      "schema": 1,
      "kind": "sentencepiece" | "byte-level BPE",
      "tokenizer": DIR, "base": PATH | null,
      "vocab": {"base_size": N, "added": N, "size": N, "unit": "pieces" | "ids",
                ...the family's own counts: base_pieces/merged_pieces/added_pieces/... or base_tokens/added_tokens/total/...},
      "merge": {...the family's merge statistics} | null,
      "korean": {TEXT: {"base": FIGURES, "merged": FIGURES}},       FIGURES: tokens, chars, words,
                                                                    tokens_per_char, tokens_per_word, byte_token_share
      "identity": {TEXT: {"lines", "identical", "share", "first_difference"}},   non-Korean text: ids as the base's
      "other_tokens_per_char": {TEXT: {"base": float, "merged": float}},
      "defects": [str, ...],                                         what the merge's own check found
      ...the family's other figures at the top level (SentencePiece: hf_agreement, decode_roundtrip, examples,
         sweep, check; byte-level: autotokenizer, reachable)
    }
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tokenizer import BadInput

SCHEMA_VERSION = 1
SENTENCEPIECE = "sentencepiece"
BYTE_LEVEL = "byte-level BPE"
KINDS = (SENTENCEPIECE, BYTE_LEVEL)


@dataclass
class TextFigures:
    """One text through one tokenizer."""

    tokens: int
    chars: int
    tokens_per_char: float
    tokens_per_word: float | None = None
    words: int | None = None
    byte_token_share: float | None = None  # tokens that are a single byte (byte fallback / byte-level byte)

    @classmethod
    def of(cls, tokens: int, chars: int, words: int, byte_tokens: int | None) -> "TextFigures":
        return cls(tokens=tokens, chars=chars, words=words, tokens_per_char=round(tokens / max(chars, 1), 4),
                   tokens_per_word=round(tokens / max(words, 1), 4),
                   byte_token_share=None if byte_tokens is None else round(byte_tokens / max(tokens, 1), 4))

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "chars": self.chars, "words": self.words,
                "tokens_per_char": self.tokens_per_char, "tokens_per_word": self.tokens_per_word,
                "byte_token_share": self.byte_token_share}

    @classmethod
    def from_dict(cls, data: dict) -> "TextFigures":
        return cls(tokens=data.get("tokens"), chars=data.get("chars"), tokens_per_char=data["tokens_per_char"],
                   tokens_per_word=data.get("tokens_per_word"), words=data.get("words"),
                   byte_token_share=data.get("byte_token_share"))


@dataclass
class VocabFigures:
    """Sizes in the tokenizer's own unit; `detail` holds the family's own counts, written beside them."""

    base_size: int
    added: int
    size: int
    unit: str  # "pieces" (SentencePiece) | "ids" (byte-level: tokens and special tokens)
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**self.detail, "base_size": self.base_size, "added": self.added, "size": self.size, "unit": self.unit}

    @classmethod
    def from_dict(cls, data: dict) -> "VocabFigures":
        detail = {k: v for k, v in data.items() if k not in ("base_size", "added", "size", "unit")}
        if "base_size" in data:
            return cls(data["base_size"], data["added"], data["size"], data.get("unit", "ids"), detail)
        if "base_pieces" in data:  # a SentencePiece report from before the schema
            return cls(data["base_pieces"], data["added_pieces"], data["merged_pieces"], "pieces", detail)
        if "base_tokens" in data:  # a byte-level report from before the schema
            return cls(data["base_tokens"], data["total"] - data["base_tokens"], data["total"], "ids", detail)
        raise KeyError("vocab.base_size")


@dataclass
class TokenizerReport:
    kind: str
    tokenizer: str
    vocab: VocabFigures | None
    korean: dict[str, dict[str, TextFigures]] = field(default_factory=dict)  # text -> {"base", "merged"}
    identity: dict[str, dict] = field(default_factory=dict)
    other_tokens_per_char: dict[str, dict[str, float]] = field(default_factory=dict)
    defects: list[str] = field(default_factory=list)
    base: str | None = None
    merge: dict | None = None
    extra: dict = field(default_factory=dict)  # the family's other figures, written at the top level
    schema: int = SCHEMA_VERSION

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    def to_dict(self) -> dict:
        common = {
            "schema": self.schema, "kind": self.kind, "tokenizer": self.tokenizer, "base": self.base,
            "vocab": self.vocab.to_dict() if self.vocab else None, "merge": self.merge,
            "korean": {name: {side: figures.to_dict() for side, figures in row.items()} for name, row in self.korean.items()},
            "identity": self.identity, "other_tokens_per_char": self.other_tokens_per_char, "defects": self.defects,
        }
        clash = set(common) & set(self.extra)
        if clash:
            raise ValueError(f"extra figures may not replace the schema's keys: {sorted(clash)}")
        return {**common, **self.extra}

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, data, where: str | Path = "report.json") -> "TokenizerReport":
        """A report of either family, this schema or an earlier one; BadInput in one line when it is none."""
        if not isinstance(data, dict) or not isinstance(data.get("korean"), dict):
            raise BadInput(f"{where}: not a tokenizer report (no \"korean\" section; tokenizer/merge.py writes one "
                           "as report.json in its output directory, `kocpt tokenizer report --output` too)")
        schema = data.get("schema", 0)
        if not isinstance(schema, int) or schema > SCHEMA_VERSION:
            raise BadInput(f"{where}: tokenizer report schema {schema!r}; this kocpt reads schema <= {SCHEMA_VERSION}")
        kind = data.get("kind") or SENTENCEPIECE
        if kind not in KINDS:
            raise BadInput(f"{where}: unknown tokenizer kind {kind!r} (known: {', '.join(KINDS)})")
        try:
            korean = {name: {side: TextFigures.from_dict(row[side]) for side in ("base", "merged")}
                      for name, row in data["korean"].items()}
            other = {name: {"base": row["base"], "merged": row["merged"]}
                     for name, row in (data.get("other_tokens_per_char") or {}).items()}
            vocab = VocabFigures.from_dict(data["vocab"]) if data.get("vocab") else None
        except (KeyError, TypeError, AttributeError) as exc:
            raise BadInput(f"{where}: tokenizer report without base/merged figures per Korean text or vocabulary "
                           f"sizes (missing {exc})") from None
        defects = data.get("defects")
        if defects is None:
            defects = (data.get("check") or {}).get("defects") or []
        known = {"schema", "kind", "tokenizer", "base", "vocab", "merge", "korean", "identity",
                 "other_tokens_per_char", "defects"}
        return cls(kind=kind, tokenizer=str(data.get("tokenizer", "")), vocab=vocab, korean=korean,
                   identity=dict(data.get("identity") or {}), other_tokens_per_char=other, defects=list(defects),
                   base=data.get("base"), merge=data.get("merge"),
                   extra={k: v for k, v in data.items() if k not in known})

    @classmethod
    def read(cls, path: str | Path) -> "TokenizerReport":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BadInput(f"{path}: tokenizer report not found") from None
        except IsADirectoryError:
            raise BadInput(f"{path}: a directory; give its report.json") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadInput(f"{path}: not a JSON tokenizer report") from None
        return cls.from_dict(data, path)
