"""Document quality filters adapted to Korean, each with its own drop reason.

Gopher-style rules count words, but Korean puts spaces between eojeol (a word plus its particles),
so a "word" is long and rare and word-level repetition statistics say little about short Korean
comments. Repetition is therefore measured on characters (spaces removed), and the letter-based
rules count Hangul syllables and jamo (compatibility jamo such as ㅋ and ㅠ are Hangul too).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np


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


# Character classes as compiled regexes. They define the counts; the counting itself goes through
# a lookup table built from these same regexes (below), so both always agree.
_HANGUL = "\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\ud7b0-\ud7ff"
_HANGUL_CHARS = re.compile(f"[{_HANGUL}]")  # syllables, conjoining and compatibility jamo (ㅋ, ㅠ)
_SYLLABLES = re.compile("[\uac00-\ud7a3]")
_LETTERS = re.compile(r"[^\W\d_]")  # alphanumeric, not a digit, not "_": a letter
_SYMBOLS = re.compile(r"[^\w\s]|_")  # neither letter, digit nor whitespace
_VISIBLE = re.compile(r"\S")
# Replacement characters, C1 controls, and Latin-1 letters À..ÿ without × and ÷ (Korean uses those).
_MOJIBAKE = re.compile("[\ufffd\x80-\x9f\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff]")

# Every class above matches exactly one character, independently of its neighbours, so a text's
# counts are sums over its code points. One uint8 of flags per BMP code point (64 KB, built at import
# by running each regex over all 65,536 characters) turns the five counts into one table lookup
# and one bincount over the text's UTF-32 code points (`benchmarks/corpus_profile.py`: all the rules
# together 0.35 -> 0.05 CPU-s per MB, with `_repetitive` below). Characters outside the BMP (emoji,
# rare Hanja) are rare: they are counted with the regexes themselves, on just those characters.
_CLASSES = (_LETTERS, _HANGUL_CHARS, _SYLLABLES, _SYMBOLS, _VISIBLE, _MOJIBAKE)
_LETTER, _HANGUL_BIT, _SYLLABLE, _SYMBOL, _VISIBLE_BIT, _MOJIBAKE_BIT = (1 << bit for bit in range(len(_CLASSES)))
_BMP = np.arange(0x10000, dtype=np.uint32).tobytes().decode("utf-32-le", "surrogatepass")


def _flag_table() -> np.ndarray:
    table = np.zeros(0x10000, dtype=np.uint8)
    for bit, pattern in enumerate(_CLASSES):
        if pattern is _VISIBLE or pattern is _SYMBOLS:
            # Dense classes: mark their (sparse) complements instead, then invert.
            complement = re.compile(r"\s") if pattern is _VISIBLE else re.compile(r"[^\W_]|\s")
            hits = np.ones(0x10000, dtype=bool)
            hits[[match.start() for match in complement.finditer(_BMP)]] = False
        else:
            hits = np.zeros(0x10000, dtype=bool)
            hits[[match.start() for match in pattern.finditer(_BMP)]] = True
        table[hits] |= np.uint8(1 << bit)
    return table


_FLAGS = _flag_table()
# bincount over the 64 flag values → per-class counts: counts = bincount @ _BIT_MATRIX.
_BIT_MATRIX = ((np.arange(64)[:, None] >> np.arange(len(_CLASSES))[None, :]) & 1).astype(np.int64)


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _analyze(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(code points, their flags, per-class counts in _CLASSES order) of `text`."""
    codes = _code_points(text)
    astral = codes > 0xFFFF
    if astral.any():
        flags = _FLAGS[np.where(astral, 0, codes)]
        outside = "".join(chr(code) for code in codes[astral].tolist())
        values = np.zeros(len(outside), dtype=np.uint8)
        for bit, pattern in enumerate(_CLASSES):
            for match in pattern.finditer(outside):
                values[match.start()] |= np.uint8(1 << bit)
        flags[astral] = values
    else:
        flags = _FLAGS[codes]
    counts = np.bincount(flags, minlength=64) @ _BIT_MATRIX
    return codes, flags, counts


def _count(pattern: re.Pattern, text: str) -> int:
    return int(_analyze(text)[2][_CLASSES.index(pattern)])


def syllable_count(text: str) -> int:
    """Complete Hangul syllables (가..힣), as opposed to bare jamo such as ㅋ or ㅠ."""
    return _count(_SYLLABLES, text)


def _hangul_share(letters: int, hangul: int) -> float:
    return hangul / letters if letters else 0.0


def hangul_share(text: str) -> float:
    """Hangul characters among letters (0 when there are no letters)."""
    counts = _analyze(text)[2]
    return _hangul_share(int(counts[0]), int(counts[1]))


def _symbol_ratio(visible: int, symbols: int) -> float:
    return symbols / visible if visible else 1.0


def symbol_ratio(text: str) -> float:
    """Characters that are neither letters, digits nor whitespace, over non-space characters."""
    counts = _analyze(text)[2]
    return _symbol_ratio(int(counts[4]), int(counts[3]))


def duplicate_line_chars(text: str) -> float:
    """Fraction of characters in lines that occur more than once (Gopher's dup_line_char_frac)."""
    lines = text.split("\n")
    if len(set(lines)) == len(lines):  # no line repeats (blank or not): nothing to count
        return 0.0
    lines = [line for line in lines if line.strip()]
    if len(lines) < 2:
        return 0.0
    counts = Counter(lines)
    repeated = sum(len(line) for line in lines if counts[line] > 1)
    return repeated / sum(len(line) for line in lines)


_ZERO = np.zeros(1, dtype=np.int64)


def _top_ngram_share(chars: np.ndarray, n: int) -> float:
    """`top_ngram_chars` on the code points of the text without its whitespace."""
    length = chars.size
    if length < n:
        return 0.0
    count = length - n + 1
    if n <= 3:  # up to 3 code points of 21 bits fit in an int64: the n-gram itself, exactly
        wide = chars.astype(np.int64)
        keys = wide[:count].copy()
        for offset in range(1, n):
            keys <<= 21
            keys |= wide[offset : offset + count]
    else:  # longer n-grams compared as their raw bytes (exact too)
        windows = np.lib.stride_tricks.sliding_window_view(chars, n)
        keys = np.ascontiguousarray(windows).view(np.dtype((np.void, 4 * n))).ravel()
    ordered = np.sort(keys)
    run_starts = np.nonzero(ordered[1:] != ordered[:-1])[0] + 1
    if run_starts.size == count - 1:  # every n-gram occurs once: the first one wins, covering n characters
        return n / length
    edges = np.concatenate((_ZERO, run_starts, np.array([count])))
    runs = edges[1:] - edges[:-1]
    # Counter.most_common(1) returns, among the most frequent n-grams, the one seen first.
    tied = ordered[edges[:-1][runs == runs.max()]]
    if tied.size == 1:
        top = tied[0]
    else:
        slot = np.minimum(np.searchsorted(tied, keys), tied.size - 1)
        top = keys[int(np.argmax(tied[slot] == keys))]
    starts = np.nonzero(keys == top)[0]
    # Occurrences (overlapping, as str.find from start + 1 finds them) cover the union of [start, start + n).
    covered = int(np.minimum(np.diff(starts), n).sum()) + n
    return covered / length


def top_ngram_chars(text: str, n: int) -> float:
    """Share of non-space characters covered by the most frequent character n-gram.

    Same result as counting `"".join(text.split())`'s n-grams with a Counter and marking every
    (overlapping) occurrence of `most_common(1)` (the old code, `tests/corpus_reference/`), but on
    numpy arrays of code points (1.4x less CPU alone; `quality_drop_reason` mostly skips it).
    """
    codes, flags, _ = _analyze(text)
    return _top_ngram_share(codes[(flags & _VISIBLE_BIT) != 0], n)


def mojibake_ratio(text: str) -> float:
    """Replacement characters, C1 controls and Latin-1 letters (Ã, ì, ë...) over all characters.

    UTF-8 Korean decoded as Latin-1/cp1252 becomes runs like 'ì•ˆë…•'; real Korean text almost
    never contains Latin-1 letters (the middle dot U+00B7, which it does use, is not counted).
    """
    return _count(_MOJIBAKE, text) / len(text) if text else 0.0


def quality_drop_reason(text: str, config: QualityConfig) -> str | None:
    """The reason to drop `text`, or None to keep it."""
    length = len(text)
    if length < config.min_chars:
        return "too_short"
    if length > config.max_chars:
        return "too_long"
    codes, flags, counts = _analyze(text)  # every class counted in one pass
    letters, hangul, syllables, symbols, visible, mojibake = counts.tolist()
    if mojibake / length > config.max_mojibake_ratio:
        return "mojibake"
    if _hangul_share(letters, hangul) < config.min_hangul_share:
        return "low_hangul"
    if syllables < config.min_syllables:
        return "too_few_syllables"
    if _symbol_ratio(visible, symbols) > config.max_symbol_ratio:
        return "symbols"
    if duplicate_line_chars(text) > config.max_duplicate_line_chars:
        return "duplicate_lines"
    if length >= config.top_ngram_min_chars and _repetitive(
        codes[(flags & _VISIBLE_BIT) != 0], config.top_ngram_size, config.max_top_ngram_chars
    ):
        return "repetition"
    return None


def _repetitive(chars: np.ndarray, n: int, limit: float) -> bool:
    """`_top_ngram_share(chars, n) > limit`, mostly without computing the share.

    Every occurrence of the most frequent n-gram starts with the same character, so it occurs at
    most as often as the most frequent character, which occurs at most as often as the fullest
    bucket of the code points modulo 1024 (collisions only add), and covers at most n characters
    per occurrence. When that bound's share is already <= limit, so is the exact share (the same
    denominator: float division is monotonic). In Korean prose the bound is far below 0.5.
    """
    if chars.size < n:
        return False  # the share is 0.0
    bound = int(np.bincount(chars & 1023).max()) * n
    return bound / chars.size > limit and _top_ngram_share(chars, n) > limit
