"""Spill runs: the corpus job's cleaned documents on disk between its shuffles, so the full text
never crosses a shuffle (pure functions, no Beam; the job opens the files through Beam's FileSystems).

A worker cleans documents, signs them, and writes them once, as *runs*: per output shard, the
documents it holds sorted by (id, line). One run is three files with a common base name:

- `BASE.jsonl`: the documents exactly as the shard will hold them (one JSON line each),
- `BASE.json`: `{"ids": [...], "keys": [...]}`, the ids and exact-dedup keys (SHA-256 of the
  normalized text, hex) in the same order,
- `BASE.sig`: the MinHash signatures in the same order, raw uint32 rows (empty without near dedup).

The dedup shuffles carry only keys, ids and (for verified candidates) signatures. The last step
per shard merges the shard's runs (`merge_runs`, a k-way merge of sorted streams: memory is one
buffered line per run), drops what the dedup steps removed, and writes the shard.

Exact dedup works on batches: a worker sends, per partition of the key space, one element with
the 16-byte key prefixes and the ids of a whole batch (`exact_batches`); the partition's step
finds equal keys with numpy (`exact_drops`). One element per batch instead of one per document
keeps the shuffle's per-element overhead (Python objects in the local runner) small.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import BinaryIO

import numpy as np

from corpus.index import is_previous, untag

KEY_BYTES = 16  # exact-dedup key prefix compared in the shuffle (128 bits of SHA-256)


def doc_line(doc: dict) -> str:
    """A document as one shard line (without the newline); identical input gives identical bytes."""
    return json.dumps(doc, ensure_ascii=False, sort_keys=True)


def encode_run(rows: list[tuple[str, str, str, bytes]]) -> tuple[bytes, bytes, bytes]:
    """(id, shard line, key, signature bytes) rows → the run's (docs, ids+keys, signatures) bytes.

    Rows are sorted here by (id, line), so every run is a sorted stream for `merge_runs`.
    """
    rows = sorted(rows, key=lambda row: (row[0], row[1]))
    docs = "".join(row[1] + "\n" for row in rows).encode("utf-8")
    table = json.dumps({"ids": [row[0] for row in rows], "keys": [row[2] for row in rows]}).encode("utf-8")
    return docs, table, b"".join(row[3] for row in rows)


def decode_table(data: bytes) -> tuple[list[str], list[str]]:
    table = json.loads(data)
    return table["ids"], table["keys"]


def read_signatures(data: bytes, width: int) -> np.ndarray:
    """A run's signature bytes → uint32 [rows, width]."""
    return np.frombuffer(data, dtype=np.uint32).reshape(-1, width) if width else np.zeros((0, 0), np.uint32)


def iter_run(ids: Sequence[str], keys: Sequence[str], docs: BinaryIO, signatures: BinaryIO | None, row_bytes: int,
             chunk: int = 1024) -> Iterator[tuple[str, str, str, bytes]]:
    """A run as (id, line, key, signature bytes) in its sorted order, reading the files as it goes."""
    block, offset = b"", 0
    for doc_id, key in zip(ids, keys):
        line = docs.readline().decode("utf-8")
        signature = b""
        if signatures is not None and row_bytes:
            if offset >= len(block):
                block, offset = signatures.read(row_bytes * chunk), 0
            signature, offset = block[offset : offset + row_bytes], offset + row_bytes
        yield doc_id, line.rstrip("\n"), key, signature


def merge_runs(runs: Iterable[Iterator[tuple[str, str, str, bytes]]]) -> Iterator[tuple[str, str, str, bytes]]:
    """Sorted runs → one stream sorted by (id, line): the same order for any split into runs."""
    return heapq.merge(*runs, key=lambda row: (row[0], row[1]))


class DropList:
    """The ids a shard must drop: exact duplicates by (id, key) and a count (a repeated id with the
    same text drops only the copies exact dedup removed), near duplicates by id.

    `take(id, key)` → (kept id, reason) when this document is dropped, else None.
    """

    def __init__(self, drops: Iterable[tuple[str, tuple]]):
        self.exact: dict[tuple[str, str], list] = {}
        self.near: dict[str, tuple[str, str]] = {}
        for doc_id, (of, reason, key) in drops:
            if key is not None:
                entry = self.exact.setdefault((doc_id, key[: 2 * KEY_BYTES]), [0, of, reason])
                entry[0] += 1
                if reason.endswith("_of_previous"):
                    entry[1:] = [of, reason]
            elif doc_id not in self.near or reason.endswith("_of_previous"):  # an earlier output's copy wins
                self.near[doc_id] = (of, reason)

    def __bool__(self) -> bool:
        return bool(self.exact or self.near)

    def take(self, doc_id: str, key: str):
        entry = self.exact.get((doc_id, key[: 2 * KEY_BYTES]))
        if entry and entry[0] > 0:
            entry[0] -= 1
            return entry[1], entry[2]
        return self.near.get(doc_id)

    def is_exact(self, doc_id: str, key: str) -> bool:
        """Like `take` for exact duplicates only (the near-dedup steps skip them), also counting down."""
        entry = self.exact.get((doc_id, key[: 2 * KEY_BYTES]))
        if entry and entry[0] > 0:
            entry[0] -= 1
            return True
        return False


def key_prefix(key: str) -> bytes:
    return bytes.fromhex(key[: 2 * KEY_BYTES])


def exact_batches(keys: Sequence[str], ids: Sequence[str], partitions: int) -> Iterator[tuple[int, tuple[bytes, str]]]:
    """A batch's hex keys and ids → (partition, (16-byte key prefixes, ids as JSON)) elements."""
    words = np.frombuffer(b"".join(key_prefix(key) for key in keys), dtype=">u8").reshape(-1, 2)
    part = words[:, 0] % np.uint64(partitions)
    id_array = np.asarray(ids, dtype=object)
    for partition in np.unique(part):
        chosen = part == partition
        yield int(partition), (words[chosen].tobytes(), json.dumps(id_array[chosen].tolist()))


def exact_drops(batches: Iterable[tuple[bytes, str]], within: bool = True) -> Iterator[tuple[str, str, str, str]]:
    """All (key prefixes, ids) of one partition → (id, key prefix hex, kept id, reason) per dropped document.

    Equal keys: the smallest id is kept and the others are `exact_duplicate` (when `within`); a key
    an earlier output holds (ids tagged by `corpus.index.tag_previous`) drops every new document
    as `exact_duplicate_of_previous` of the earlier output's smallest id.
    """
    batches = list(batches)
    if not batches:
        return
    words = np.concatenate([np.frombuffer(data, dtype=">u8") for data, _ in batches]).reshape(-1, 2)
    ids = [doc_id for _, data in batches for doc_id in json.loads(data)]
    order = np.lexsort((words[:, 1], words[:, 0]))
    ordered = words[order]
    boundaries = np.flatnonzero(np.any(ordered[1:] != ordered[:-1], axis=1)) + 1
    edges = np.concatenate(([0], boundaries, [len(order)]))
    for start in np.flatnonzero(np.diff(edges) >= 2):
        members = [ids[i] for i in order[edges[start] : edges[start + 1]]]
        high, low = ordered[edges[start]]
        key_hex = f"{int(high):016x}{int(low):016x}"
        earlier = sorted(doc_id for doc_id in members if is_previous(doc_id))
        new = sorted(doc_id for doc_id in members if not is_previous(doc_id))
        if earlier:
            for doc_id in new:
                yield doc_id, key_hex, untag(earlier[0]), "exact_duplicate_of_previous"
        elif within:
            for doc_id in new[1:]:
                yield doc_id, key_hex, new[0], "exact_duplicate"


def encode_band_file(hashes: np.ndarray, ids: Sequence[str]) -> bytes:
    """One band's hashes (uint64) of a shard's documents and their ids, as .npz bytes.

    The ids are one UTF-8 blob with offsets, so a reader materializes only the ids it needs (the
    members of buckets with two or more documents), never one Python string per document.
    """
    import io

    encoded = [doc_id.encode("utf-8") for doc_id in ids]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(item) for item in encoded]) if encoded else []
    sink = io.BytesIO()
    np.savez(sink, hashes=np.asarray(hashes, dtype=np.uint64), offsets=offsets,
             blob=np.frombuffer(b"".join(encoded), dtype=np.uint8))
    return sink.getvalue()


class BandFiles:
    """Several band files read together: all hashes, and ids looked up by position on demand."""

    def __init__(self, files: Iterable[bytes]):
        import io

        self.hashes, self._offsets, self._blobs, self._starts = [], [], [], [0]
        for data in files:
            with np.load(io.BytesIO(data)) as arrays:
                self.hashes.append(arrays["hashes"])
                self._offsets.append(arrays["offsets"])
                self._blobs.append(arrays["blob"].tobytes())
            self._starts.append(self._starts[-1] + len(self.hashes[-1]))
        self.hashes = np.concatenate(self.hashes) if self.hashes else np.zeros(0, dtype=np.uint64)

    def ids(self, positions: np.ndarray) -> list[str]:
        found = []
        for position in positions.tolist():
            file = int(np.searchsorted(self._starts, position, side="right")) - 1
            row, offsets = position - self._starts[file], self._offsets[file]
            found.append(self._blobs[file][offsets[row] : offsets[row + 1]].decode("utf-8"))
        return found


def in_buckets(hashes: np.ndarray) -> np.ndarray:
    """Positions of the hashes that occur at least twice (members of a bucket with candidates)."""
    order = np.argsort(hashes, kind="stable")
    ordered = hashes[order]
    repeated = np.zeros(len(ordered), dtype=bool)
    if len(ordered) > 1:
        same = ordered[1:] == ordered[:-1]
        repeated[1:] |= same
        repeated[:-1] |= same
    return np.sort(order[repeated])
