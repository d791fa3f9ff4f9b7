"""The index every corpus output keeps of what it holds, for deduplicating later corpora against it.

`index/part-NNNNN-of-MMMMM.parquet`, one per shard: `id` (string), `text_sha256` (the exact-dedup
key of the normalized text), `bands` (the LSH band hashes, list of uint64) and `signature` (the
MinHash signature, uint32 values as bytes; null when near dedup was off). A later run with
`--dedup-against OUTPUT` reads only these files, never the old text: exact duplicates match on
`text_sha256`, near duplicates share a band hash and are verified on the signature.

Ids of an earlier output are carried through the near-dedup shuffles with PREVIOUS_TAG in front,
so they can never be mistaken for (or merged with) the new run's ids, and sort first.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence

import numpy as np

PREVIOUS_TAG = "\x00prev\x00"
INDEX_FOLDER = "index"
PARTNER_LIMIT = 16  # earlier documents a new one is compared with per bucket


def tag_previous(doc_id: str) -> str:
    return PREVIOUS_TAG + doc_id


def is_previous(doc_id: str) -> bool:
    return doc_id.startswith(PREVIOUS_TAG)


def untag(doc_id: str) -> str:
    return doc_id[len(PREVIOUS_TAG) :] if is_previous(doc_id) else doc_id


def index_name(shard_file_name: str) -> str:
    return shard_file_name.removesuffix(".jsonl.zst") + ".parquet"


def _index_table(rows: Sequence[tuple[str, str, np.ndarray | None, bytes | None]]):
    import pyarrow as pa

    return pa.table(
        {
            "id": pa.array([row[0] for row in rows], pa.string()),
            "text_sha256": pa.array([row[1] for row in rows], pa.string()),
            "bands": pa.array([None if row[2] is None else row[2].tolist() for row in rows], pa.list_(pa.uint64())),
            "signature": pa.array([row[3] for row in rows], pa.binary()),
        }
    )


def encode_index(rows: Sequence[tuple[str, str, np.ndarray | None, bytes | None]]) -> bytes:
    """Parquet bytes of (id, text_sha256, band hashes or None, signature bytes or None) rows."""
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(_index_table(rows), sink, compression="zstd")
    return sink.getvalue()


class IndexWriter:
    """One index file written row group by row group (memory: one group), from (id, key, signature).

    Band hashes are computed here from the signature (uint32 bytes); an empty signature (near
    dedup off) gives null bands and signature. Fixed group sizes keep the bytes identical between runs.
    """

    GROUP_ROWS = 8192

    def __init__(self, sink, bands: int, rows_per_band: int):
        import pyarrow.parquet as pq

        self._writer = pq.ParquetWriter(sink, _index_table([]).schema, compression="zstd")
        self._bands, self._rows_per_band = bands, rows_per_band
        self._pending: list[tuple[str, str, bytes]] = []
        self.rows = 0

    def add(self, doc_id: str, key: str, signature: bytes) -> None:
        self._pending.append((doc_id, key, signature))
        self.rows += 1
        if len(self._pending) >= self.GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        from corpus.minhash import band_hashes

        if not self._pending:
            return
        signed = [row for row in self._pending if row[2]]
        bands = {}
        if signed:
            matrix = np.stack([np.frombuffer(row[2], dtype=np.uint32) for row in signed])
            bands = dict(zip(range(len(signed)), band_hashes(matrix, self._bands, self._rows_per_band)))
        rows, signed_at = [], 0
        for doc_id, key, signature in self._pending:
            if signature:
                rows.append((doc_id, key, bands[signed_at], signature))
                signed_at += 1
            else:
                rows.append((doc_id, key, None, None))
        self._writer.write_table(_index_table(rows))
        self._pending = []

    def close(self) -> None:
        self._flush()
        self._writer.close()


def read_index(stream) -> Iterator[tuple[str, str, list[int] | None, bytes | None]]:
    """(id, text_sha256, band hashes, signature) of every row of one index file."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(stream)
    for batch in parquet.iter_batches(batch_size=8192):
        columns = batch.to_pydict()
        yield from zip(columns["id"], columns["text_sha256"], columns["bands"], columns["signature"])


def previous_candidates(hashes: np.ndarray, ids: Sequence[str]) -> Iterator[tuple[str, str]]:
    """Buckets holding new and earlier documents → (tagged earlier id, new id) pairs to verify.

    Each new document is paired with up to PARTNER_LIMIT earlier documents of its bucket (the
    smallest ids), which keeps a bucket of many earlier near-copies linear.
    """
    order = np.argsort(hashes, kind="stable")
    hashes, ids = hashes[order], np.asarray(ids, dtype=object)[order]
    edges = np.concatenate(([0], np.flatnonzero(np.diff(hashes)) + 1, [hashes.size]))
    for start in np.flatnonzero(np.diff(edges) >= 2):
        members = ids[edges[start] : edges[start + 1]]
        earlier = sorted(doc_id for doc_id in members if is_previous(doc_id))[:PARTNER_LIMIT]
        if not earlier:
            continue
        for new in sorted(doc_id for doc_id in members if not is_previous(doc_id)):
            for old in earlier:
                yield (old, new)
