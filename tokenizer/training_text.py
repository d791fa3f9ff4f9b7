"""Training sentences (either family's) from corpus shards or plain text files.

Documents become lines, and lines longer than SentencePiece's `max_sentence_length` (bytes) are cut at
sentence ends, then at spaces, so the trainer never silently drops them.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from corpus.shards import ShardError, iter_documents, shard_paths
from tokenizer import BadInput

TEXT_SUFFIXES = (".txt", ".text")
SENTENCE_END = re.compile(r"(?<=[.!?。…])\s+|(?<=다\.)")


def resolve_inputs(paths: Iterable[str | Path]) -> list[tuple[str, Path]]:
    """Each input as ("shard", file) or ("text", file). Directories: corpus shards, else *.txt files."""
    resolved: list[tuple[str, Path]] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise BadInput(f"{path}: no such file or directory")
        if path.is_dir():
            try:
                resolved += [("shard", shard) for shard in shard_paths(path)]
                continue
            except ShardError:
                pass
            texts = sorted(p for p in path.iterdir() if p.suffix in TEXT_SUFFIXES and p.is_file())
            if not texts:
                raise BadInput(f"{path}: no corpus shards (*.jsonl.zst) and no plain text files (*.txt) in directory")
            resolved += [("text", text) for text in texts]
        elif path.name.endswith(".jsonl.zst"):
            resolved.append(("shard", path))
        else:
            resolved.append(("text", path))
    if not resolved:
        raise BadInput("no input given")
    return resolved


def iter_texts(inputs: list[tuple[str, Path]]) -> Iterator[str]:
    """Document texts: the `text` field of shard records, or each line of a plain text file."""
    for kind, path in inputs:
        if kind == "shard":
            try:
                for document in iter_documents(path):
                    text = document.get("text") if isinstance(document, dict) else None
                    if not isinstance(text, str):
                        raise BadInput(f"{path}: record without a string 'text' field")
                    yield text
            except ShardError as exc:
                raise BadInput(str(exc)) from None
        else:
            try:
                with open(path, encoding="utf-8") as handle:
                    yield from handle
            except UnicodeDecodeError:
                raise BadInput(f"{path}: not UTF-8 text") from None
            except OSError as exc:
                raise BadInput(f"{path}: {exc.strerror or exc}") from None


def split_long(line: str, max_bytes: int) -> list[str]:
    """Pieces of `line` of at most `max_bytes` UTF-8 bytes, cut at sentence ends, then spaces, then anywhere."""
    if len(line.encode("utf-8")) <= max_bytes:
        return [line]
    out: list[str] = []
    for sentence in SENTENCE_END.split(line):
        if len(sentence.encode("utf-8")) <= max_bytes:
            out.append(sentence)
            continue
        current = ""
        for word in sentence.split(" "):
            candidate = f"{current} {word}" if current else word
            if len(candidate.encode("utf-8")) <= max_bytes:
                current = candidate
                continue
            if current:
                out.append(current)
            # A single word longer than the limit: cut by characters.
            while len(word.encode("utf-8")) > max_bytes:
                cut = max_bytes // 4 or 1
                out.append(word[:cut])
                word = word[cut:]
            current = word
        if current:
            out.append(current)
    return [piece for piece in out if piece.strip()]


def sentences(texts: Iterable[str], max_bytes: int) -> Iterator[str]:
    for text in texts:
        for line in text.split("\n"):
            line = line.strip("\r")
            if line.strip():
                yield from split_long(line, max_bytes)


def sample(items: Iterable[str], size: int, seed: int, dedup: bool) -> tuple[list[str], int, int]:
    """Reservoir sample of `size` items (all when size <= 0), deterministic for a seed, in input order.

    Returns (sample, items seen, exact duplicates skipped).
    """
    rng = random.Random(seed)
    seen_hashes: set[int] = set()
    reservoir: list[tuple[int, str]] = []
    count = duplicates = 0
    for item in items:
        if dedup:
            key = hash(item)
            if key in seen_hashes:
                duplicates += 1
                continue
            seen_hashes.add(key)
        if size <= 0 or len(reservoir) < size:
            reservoir.append((count, item))
        else:
            slot = rng.randint(0, count)
            if slot < size:
                reservoir[slot] = (count, item)
        count += 1
    reservoir.sort()
    return [item for _, item in reservoir], count, duplicates


@dataclass
class TrainingSample:
    sentences: list[str]
    seen: int  # distinct sentences seen
    duplicates: int
    read_seconds: float


def read_sample(job) -> TrainingSample:
    """The sentences either family trains on; `job`: tokenizer/train.py's TrainConfig (inputs, its `tokenizer:`
    section's sample_size and seed, max_sentence_length, dedup)."""
    inputs = resolve_inputs(job.inputs)
    started = time.perf_counter()
    texts = tqdm(iter_texts(inputs), desc="reading", unit=" docs", mininterval=1.0, disable=None)
    chosen, seen, duplicates = sample(sentences(texts, job.max_sentence_length), job.tokenizer.sample_size,
                                      job.tokenizer.seed, job.dedup)
    if not chosen:
        raise BadInput(f"{inputs[0][1]}: no text found in the input")
    return TrainingSample(chosen, seen, duplicates, round(time.perf_counter() - started, 2))
