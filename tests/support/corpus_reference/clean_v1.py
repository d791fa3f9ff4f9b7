"""One document through normalize → scrub PII → quality filter: the per-document part of the job."""

from __future__ import annotations

import hashlib

from tests.support.corpus_reference.filters_v1 import QualityConfig, quality_drop_reason
from tests.support.corpus_reference.normalize_v1 import normalize_text
from tests.support.corpus_reference.pii_v1 import scrub_pii


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
