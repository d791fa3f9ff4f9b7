"""Document quality filters adapted to Korean, each with its own drop reason.

Gopher-style rules count words, but Korean puts spaces between eojeol (a word plus its particles),
so a "word" is long and rare and word-level repetition statistics say little about short Korean
comments. Repetition is therefore measured on characters (spaces removed), and the letter-based
rules count Hangul syllables and jamo (compatibility jamo such as ㅋ and ㅠ are Hangul too).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds; a document is dropped by the first rule it breaks, in this order."""

    min_chars: int = 10
    max_chars: int = 100_000
    min_hangul_share: float = 0.5  # Hangul characters / all letters
    min_syllables: int = 3  # complete Hangul syllables; "ㅋㅋㅋ!!!" has letters but no words
    max_symbol_ratio: float = 0.5  # punctuation and symbols / non-space characters
    max_duplicate_line_chars: float = 0.3  # characters in repeated lines / all characters
    max_top_ngram_chars: float = 0.5  # characters covered by the most frequent n-gram
    top_ngram_size: int = 3
    top_ngram_min_chars: int = 20  # too short a text has no meaningful n-gram statistics
    max_mojibake_ratio: float = 0.02  # U+FFFD, C1 controls, Latin-1 letters (UTF-8 read as Latin-1)

    def validate(self) -> None:
        if not 0 <= self.min_chars <= self.max_chars:
            raise ValueError(f"need 0 <= min_chars <= max_chars, got {self.min_chars}, {self.max_chars}")
        for name in (
            "min_hangul_share",
            "max_symbol_ratio",
            "max_duplicate_line_chars",
            "max_top_ngram_chars",
            "max_mojibake_ratio",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.min_syllables < 0:
            raise ValueError(f"min_syllables must be >= 0, got {self.min_syllables}")
        if self.top_ngram_size < 1:
            raise ValueError(f"top_ngram_size must be >= 1, got {self.top_ngram_size}")


def is_hangul(char: str) -> bool:
    code = ord(char)
    return (
        0xAC00 <= code <= 0xD7A3  # syllables
        or 0x1100 <= code <= 0x11FF  # conjoining jamo
        or 0x3130 <= code <= 0x318F  # compatibility jamo (ㅋ, ㅠ)
        or 0xA960 <= code <= 0xA97F
        or 0xD7B0 <= code <= 0xD7FF
    )


def syllable_count(text: str) -> int:
    """Complete Hangul syllables (가..힣), as opposed to bare jamo such as ㅋ or ㅠ."""
    return sum(1 for c in text if "\uac00" <= c <= "\ud7a3")


def hangul_share(text: str) -> float:
    """Hangul characters among letters (0 when there are no letters)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    return sum(map(is_hangul, letters)) / len(letters)


def symbol_ratio(text: str) -> float:
    """Characters that are neither letters, digits nor whitespace, over non-space characters."""
    visible = [c for c in text if not c.isspace()]
    if not visible:
        return 1.0
    return sum(1 for c in visible if not c.isalnum()) / len(visible)


def duplicate_line_chars(text: str) -> float:
    """Fraction of characters in lines that occur more than once (Gopher's dup_line_char_frac)."""
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) < 2:
        return 0.0
    counts = Counter(lines)
    repeated = sum(len(line) for line in lines if counts[line] > 1)
    return repeated / sum(len(line) for line in lines)


def top_ngram_chars(text: str, n: int) -> float:
    """Share of non-space characters covered by the most frequent character n-gram."""
    chars = "".join(text.split())
    if len(chars) < n:
        return 0.0
    grams = Counter(chars[i : i + n] for i in range(len(chars) - n + 1))
    top, _ = grams.most_common(1)[0]
    covered = bytearray(len(chars))
    start = chars.find(top)
    while start != -1:
        covered[start : start + n] = b"\x01" * n
        start = chars.find(top, start + 1)
    return sum(covered) / len(chars)


# Latin-1 letters À..ÿ without × and ÷, which Korean text does use.
_LATIN1_LETTERS = frozenset(chr(c) for c in range(0xC0, 0x100)) - {"\u00d7", "\u00f7"}


def mojibake_ratio(text: str) -> float:
    """Replacement characters, C1 controls and Latin-1 letters (Ã, ì, ë...) over all characters.

    UTF-8 Korean decoded as Latin-1/cp1252 becomes runs like 'ì•ˆë…•'; real Korean text almost
    never contains Latin-1 letters (the middle dot U+00B7, which it does use, is not counted).
    """
    if not text:
        return 0.0
    bad = sum(1 for c in text if c == "\ufffd" or "\x80" <= c <= "\x9f" or c in _LATIN1_LETTERS)
    return bad / len(text)


def quality_drop_reason(text: str, config: QualityConfig) -> str | None:
    """The reason to drop `text`, or None to keep it."""
    length = len(text)
    if length < config.min_chars:
        return "too_short"
    if length > config.max_chars:
        return "too_long"
    if mojibake_ratio(text) > config.max_mojibake_ratio:
        return "mojibake"
    if hangul_share(text) < config.min_hangul_share:
        return "low_hangul"
    if syllable_count(text) < config.min_syllables:
        return "too_few_syllables"
    if symbol_ratio(text) > config.max_symbol_ratio:
        return "symbols"
    if duplicate_line_chars(text) > config.max_duplicate_line_chars:
        return "duplicate_lines"
    if length >= config.top_ngram_min_chars and top_ngram_chars(text, config.top_ngram_size) > config.max_top_ngram_chars:
        return "repetition"
    return None
