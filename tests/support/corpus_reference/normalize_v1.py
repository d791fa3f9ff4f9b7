"""Text normalization for Korean documents.

NFC composes decomposed Hangul (macOS writes NFD: 한 as ᄒ + ᅡ + ᆫ) into syllables. Never NFKC:
it would turn compatibility jamo (ㅋ U+314B, common in chat) into conjoining jamo (U+110F) that no
tokenizer piece matches, and rewrite full-width punctuation that Korean text legitimately uses.
"""

from __future__ import annotations

import re
import unicodedata

# Zero-width and invisible formatting characters that only break tokenization and dedup.
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# Control characters (category Cc) except tab and newline; \r is handled as a line break first.
_CONTROL = "".join(chr(c) for c in range(0x20) if chr(c) not in "\t\n") + "\x7f" + "".join(
    chr(c) for c in range(0x80, 0xA0)
)
_DROP_TABLE = str.maketrans("", "", _INVISIBLE + _CONTROL)
# Unicode spaces (no-break, ideographic, en/em...) that should read as a plain space.
_SPACES = re.compile(r"[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_LINE_BREAKS = re.compile(r"\r\n?|[\u2028\u2029\x0b\x0c\x85]")
_BLANK_RUNS = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFC, invisible/control characters removed, whitespace tidied, paragraphs kept.

    Runs of spaces and tabs inside a line become one space; lines are stripped; more than one
    blank line between paragraphs becomes one blank line. Single newlines are kept, so lists,
    dialogue and paragraphs are never joined.
    """
    text = _LINE_BREAKS.sub("\n", text)
    text = unicodedata.normalize("NFC", text.translate(_DROP_TABLE))
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()
