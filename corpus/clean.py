"""One document through normalize → scrub PII → quality filter: the per-document part of the job."""

from __future__ import annotations

import hashlib

from corpus.filters import QualityConfig, quality_drop_reason
from corpus.normalize import normalize_text
from corpus.pii import scrub_pii


def clean_document(doc: dict, quality: QualityConfig, scrub: bool = True) -> tuple[dict, str | None, dict[str, int]]:
    """`(cleaned doc, drop reason or None, PII counts)`; the input dict is not modified."""
    text = normalize_text(doc["text"])
    pii_counts: dict[str, int] = {}
    if scrub:
        text, pii_counts = scrub_pii(text)
    cleaned = {**doc, "text": text}
    if pii_counts:
        cleaned["meta"] = {**doc.get("meta", {}), "pii": pii_counts}
    return cleaned, quality_drop_reason(text, quality), pii_counts


def text_key(text: str) -> str:
    """Exact-duplicate key: SHA-256 of the normalized text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
