"""Near-duplicate ground truth and scores: cleaned text, character shingles and Jaccard exactly as the
corpus pipeline sees them; planted-pair recall and drop precision of a run's output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import zstandard

from corpus.clean import clean_document
from corpus.filters import QualityConfig
from corpus.minhash import canonical_text
from corpus.records import ReadOptions, read_input

RECALL_MIN_JACCARD = 0.85  # planted pairs at or above this must be found
PRECISION_MIN_JACCARD = 0.7  # a near_duplicate drop is correct when its true Jaccard is at least this
RECALL_TARGET, PRECISION_TARGET = 0.95, 0.99
QUALITY = QualityConfig()


def cleaned(text: str) -> tuple[str, str | None]:
    """(text after normalize + PII scrub, quality drop reason or None), as the pipeline computes it."""
    doc, reason, _ = clean_document({"id": "", "text": text, "source": "", "meta": {}}, QUALITY)
    return doc["text"], reason


def shingle_set(text: str, ngram: int = 5) -> set[str]:
    """Character n-grams of `canonical_text` (a text shorter than n is one shingle), as MinHasher."""
    canon = canonical_text(text)
    if len(canon) < ngram:
        return {canon} if canon else set()
    return {canon[i : i + ngram] for i in range(len(canon) - ngram + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def rejected_records(output: Path) -> dict[str, dict]:
    """id -> rejected/dropped record of a pipeline output."""
    records = {}
    for path in sorted((output / "rejected").glob("*.jsonl.zst")):
        with zstandard.open(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                if "id" in record:
                    records[record["id"]] = record
    return records


def read_texts(paths: list[Path], wanted: set[str]) -> dict[str, str]:
    """Raw texts of the wanted ids, read with the pipeline's own reader (same ids as the pipeline)."""
    texts = {}
    for path in paths:
        with open(path, "rb") as stream:
            for kind, record in read_input(str(path), stream, ReadOptions()):
                if kind == "doc" and record["id"] in wanted:
                    texts[record["id"]] = record["text"]
    return texts


def near_dup_precision(drops: list[tuple[str, str]], texts: dict[str, str]) -> dict:
    """Share of (dropped id, kept id) pairs whose true Jaccard on the cleaned texts is >= 0.7."""
    similarities = [jaccard(shingle_set(cleaned(texts[a])[0]), shingle_set(cleaned(texts[b])[0])) for a, b in drops]
    correct = sum(s >= PRECISION_MIN_JACCARD for s in similarities)
    return {
        "drops": len(drops),
        "correct": correct,
        "precision": round(correct / len(drops), 4) if drops else None,
        "min_true_jaccard": round(min(similarities), 3) if similarities else None,
        "true_jaccard_histogram": histogram(similarities),
    }


def histogram(values: list[float], edges=(0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0001)) -> dict[str, int]:
    counts = np.histogram(values, bins=edges)[0] if values else np.zeros(len(edges) - 1, dtype=int)
    return {f"{lo:.2f}-{min(hi, 1.0):.2f}": int(c) for lo, hi, c in zip(edges[:-1], edges[1:], counts)}


def planted_recall(planted: list[dict], removed: dict[str, str], other_exits: set[str]) -> dict:
    """Recall per true-Jaccard band; `removed`: near-dup-dropped ids; `other_exits`: ids dropped otherwise."""
    bands = [(0.6, 0.7), (0.7, 0.8), (0.8, 0.85), (0.85, 0.9), (0.9, 0.95), (0.95, 1.0001)]
    by_band = {f"{lo:.2f}-{min(hi, 1.0):.2f}": [0, 0] for lo, hi in bands}
    found = total = excluded = 0
    for pair in planted:
        a, b = pair["original"], pair["copy"]
        if a in other_exits or b in other_exits:
            excluded += 1
            continue
        hit = a in removed or b in removed
        for (lo, hi), name in zip(bands, by_band):
            if lo <= pair["jaccard"] < hi:
                by_band[name][0] += hit
                by_band[name][1] += 1
        if pair["jaccard"] >= RECALL_MIN_JACCARD:
            found += hit
            total += 1
    return {
        "pairs_at_or_above_0.85": total,
        "found": found,
        "recall": round(found / total, 4) if total else None,
        "excluded_pairs_other_drop": excluded,
        "found_rate_by_true_jaccard": {name: (round(f / n, 3) if n else None, n) for name, (f, n) in by_band.items()},
    }


