"""Text encodings of raw input files: `--encoding`, BOMs, `auto` detection, and hints.

Korean text still arrives in CP949/EUC-KR (older corpora, Windows exports) and sometimes UTF-16
(Windows "Unicode" text). `auto` decides per file from its first MiB: a BOM if there is one, else
UTF-8 when that decodes strictly, else CP949 when it decodes more lines than UTF-8 does.
CP949 is a superset of EUC-KR, so a file written as EUC-KR reads under either name.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable

ENCODINGS = ("utf-8", "cp949", "euc-kr", "utf-16", "auto")
SNIFF_BYTES = 1 << 20  # bytes `auto` looks at
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
MOSTLY_UNDECODABLE = 0.5  # share of a file's lines above which the job summary says which encoding to use


def validate_encoding(encoding: str) -> None:
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")


def _sample_lines(head: bytes) -> list[bytes]:
    lines = head.split(b"\n")
    if len(head) >= SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut inside a character
    return [line for line in lines if line.strip()]


def _failures(lines: Iterable[bytes], encoding: str) -> int:
    failed = 0
    for line in lines:
        try:
            line.decode(encoding)
        except UnicodeDecodeError:
            failed += 1
    return failed


def detect_encoding(head: bytes) -> str:
    """The encoding `auto` picks for a file that starts with `head` (its first SNIFF_BYTES)."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    lines = _sample_lines(head)
    utf8_failures = _failures(lines, "utf-8")
    if utf8_failures == 0:
        return "utf-8"
    return "cp949" if _failures(lines, "cp949") < utf8_failures else "utf-8"


def suggest_encoding(undecodable: list[bytes]) -> str | None:
    """An `--encoding` that would read these lines (a sample of those that failed), if any."""
    if not undecodable:
        return None
    if any(b"\x00" in line for line in undecodable):
        return "utf-16"  # UTF-16 text read as bytes: every ASCII character comes with a NUL
    for encoding in ("utf-8", "cp949"):
        if _failures(undecodable, encoding) == 0:
            return encoding
    return None


def rejection_reason(encoding: str) -> str:
    """The reject reason of a line that does not decode: `invalid_utf8`, `invalid_cp949`, ..."""
    return "invalid_" + encoding.replace("-", "")


def strip_utf8_bom(first_line: bytes) -> bytes:
    return first_line.removeprefix(codecs.BOM_UTF8)
