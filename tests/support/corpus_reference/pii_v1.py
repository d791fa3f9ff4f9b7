"""PII scrubbing with placeholders, counted per kind.

Patterns are Korean-specific (phone plans, resident registration numbers) and validated beyond
their shape where a checksum or calendar exists (Luhn for cards, month/day for RRNs), so that
prices, dates, order numbers and version strings are left alone.
"""

from __future__ import annotations

import re
from collections import Counter

PLACEHOLDERS = {
    "email": "<EMAIL>",
    "rrn": "<RRN>",
    "card": "<CARD>",
    "phone": "<PHONE>",
    "ip": "<IP>",
}

# Digits may not touch the match on either side (no matching inside longer numbers).
_NB = r"(?<![\d.\-])"
_NA = r"(?![\d\-]|\.\d)"

# Boundaries are ASCII-only: Korean particles follow addresses directly ("...@example.net으로"),
# and Hangul counts as \w, so \b would not match there.
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![A-Za-z0-9])")
# YYMMDD-GNNNNNN; G (gender/century digit) is 1-8. The date is checked in code.
_RRN = re.compile(_NB + r"(\d{2})(\d{2})(\d{2})[- ]?([1-8])\d{6}" + _NA)
# 13-19 digits, optionally grouped by single spaces or hyphens (4-4-4-4, 4-6-5 for Amex).
_CARD = re.compile(_NB + r"\d(?:[ -]?\d){12,18}" + _NA)
# Mobile (010, 011, 016-019), Seoul 02, regional 0xx, internet phone 070, with a separator or
# none; +82 international forms drop the leading 0. Business numbers (1588-xxxx) are not personal.
_AREA = r"(?:1[016789]|2|[3-6][1-5]|70)"
_PHONE = re.compile(
    # (02)123-4567
    _NB + r"\(0" + _AREA + r"\)\s?\d{3,4}-\d{4}" + _NA + "|"
    # 010-1234-5678, 02 123 4567, 010.1234.5678, 01012345678, +82 10-1234-5678, +82-2-123-4567
    r"(?:(?<![\w+])\+82[ -]?(?:\(0\))?|" + _NB + r"0)" + _AREA
    + r"(?:(?P<sep>[ .-])\d{3,4}(?P=sep)\d{4}|\d{7,8})" + _NA
)
_IPV4 = re.compile(
    r"(?<![A-Za-z0-9.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![A-Za-z0-9]|\.\d)"
)
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _rrn_valid(match: re.Match) -> bool:
    month, day = int(match.group(2)), int(match.group(3))
    return 1 <= month <= 12 and 1 <= day <= _DAYS_IN_MONTH[month - 1]


def _ip_valid(match: re.Match) -> bool:
    # "1.2.3.4편" (a movie series) is not an address: real ones have a multi-digit octet.
    return any(len(octet) > 1 for octet in match.group(0).split("."))


def _card_valid(match: re.Match) -> bool:
    text = match.group(0)
    digits = re.sub(r"\D", "", text)
    groups = re.split(r"[ -]", text)
    # Either one run of digits or a consistent grouping (no stray separators inside groups).
    if len(groups) > 1 and any(len(group) < 4 for group in groups):
        return False
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


_PATTERNS = (  # order matters: a card number must not be half-eaten by the phone pattern
    ("email", _EMAIL, None),
    ("rrn", _RRN, _rrn_valid),
    ("card", _CARD, _card_valid),
    ("phone", _PHONE, None),
    ("ip", _IPV4, _ip_valid),
)


def scrub_pii(text: str) -> tuple[str, dict[str, int]]:
    """Replace PII with placeholders; returns the new text and counts per kind (only > 0)."""
    counts: Counter[str] = Counter()
    for kind, pattern, valid in _PATTERNS:

        def replace(match: re.Match, kind=kind, valid=valid) -> str:
            if valid is not None and not valid(match):
                return match.group(0)
            counts[kind] += 1
            return PLACEHOLDERS[kind]

        text = pattern.sub(replace, text)
    return text, dict(counts)
