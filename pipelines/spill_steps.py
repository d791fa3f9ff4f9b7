"""Beam steps that keep the full text off every shuffle (the run format is `corpus.spill`).

    cleaned docs → SpillFn: text key + MinHash signature, documents written once as sorted runs
                   per output shard (FileSystems: local disk, GCS, ...); out come only the runs'
                   names and batched (key prefix, id) elements for exact dedup
    ExactDedup:    (key prefix, id) batches grouped by key partition → ids to drop
    WriteShardsFromRuns: per shard, its runs merged in id order, the drops removed, the shard and
                   its index/ file streamed out (memory: one buffered line per run + one row group)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import uuid
from collections import defaultdict

import apache_beam as beam
import zstandard
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from corpus.clean import text_key
from corpus.index import INDEX_FOLDER, IndexWriter, index_name, tag_previous
from corpus.minhash import MinHashConfig, MinHasher
from corpus.shards import shard_name, shard_of
from corpus.spill import (
    DropList,
    decode_table,
    doc_line,
    encode_run,
    exact_batches,
    exact_drops,
    iter_run,
    merge_runs,
    read_signatures,
)

SPILL_FOLDER = "_spill"  # under the job's staging folder; removed before the output is published
NAMESPACE = "kocpt.corpus"
RAW = CompressionTypes.UNCOMPRESSED  # our own bytes: Beam must not (de)compress .zst/.gz by suffix


def write_file(path: str, data: bytes) -> None:
    with FileSystems.create(path, compression_type=RAW) as handle:
        handle.write(data)


def read_file(path: str) -> bytes:
    with FileSystems.open(path, compression_type=RAW) as handle:
        return handle.read()


def remove_spill(staging: str) -> None:
    """Delete the job's runs (they are not part of the output)."""
    folder = FileSystems.join(staging, SPILL_FOLDER)
    if "://" not in staging:
        shutil.rmtree(folder, ignore_errors=True)
        return
    found = FileSystems.match([FileSystems.join(folder, "**")])[0].metadata_list
    if found:
        FileSystems.delete([meta.path for meta in found])


class SpillFn(beam.DoFn):
    """Batches of cleaned documents → runs (shard, (base path, rows)); EXACT: exact-dedup batches."""

    EXACT = "exact"

    def __init__(self, spill_dir: str, num_shards: int, minhash: MinHashConfig | None, exact_partitions: int,
                 flush_bytes: int = 64 << 20):
        self.spill_dir, self.num_shards, self.minhash = spill_dir, num_shards, minhash
        self.exact_partitions, self.flush_bytes = exact_partitions, flush_bytes

    def setup(self):
        self.hasher = MinHasher(self.minhash) if self.minhash else None

    def start_bundle(self):
        self._rows: dict[int, list] = defaultdict(list)
        self._bytes = 0

    def process(self, batch: list[dict]):
        ids = [doc["id"] for doc in batch]
        keys = [text_key(doc["text"]) for doc in batch]
        signatures = self.hasher.signatures([doc["text"] for doc in batch]) if self.hasher else None
        for number, doc in enumerate(batch):
            line = doc_line(doc)
            signature = signatures[number].tobytes() if signatures is not None else b""
            self._rows[shard_of(ids[number], self.num_shards)].append((ids[number], line, keys[number], signature))
            self._bytes += 2 * len(line) + len(signature) + 200  # roughly what the row holds in memory
        if self.exact_partitions:
            for element in exact_batches(keys, ids, self.exact_partitions):
                yield beam.pvalue.TaggedOutput(self.EXACT, element)
        if self._bytes >= self.flush_bytes:
            yield from self._flush()

    def finish_bundle(self):
        for run in self._flush():
            yield GlobalWindows.windowed_value(run)

    def _flush(self):
        for shard, rows in sorted(self._rows.items()):
            base = FileSystems.join(self.spill_dir, f"shard-{shard:05d}", uuid.uuid4().hex)
            docs, table, signatures = encode_run(rows)
            write_file(base + ".jsonl", docs)
            write_file(base + ".json", table)
            write_file(base + ".sig", signatures)
            yield (shard, (base, len(rows)))
        self._rows.clear()
        self._bytes = 0


class SpillRecordsFn(beam.DoFn):
    """Records (rejected/ and dropped documents) → runs (shard, (base path, rows)) sorted by `key`,
    so rejected texts do not cross a shuffle either."""

    def __init__(self, spill_dir: str, num_shards: int, key, flush_bytes: int = 64 << 20):
        self.spill_dir, self.num_shards, self.key, self.flush_bytes = spill_dir, num_shards, key, flush_bytes

    def start_bundle(self):
        self._rows: dict[int, list] = defaultdict(list)
        self._bytes = 0

    def process(self, record: dict):
        key = self.key(record)
        line = doc_line(record)
        self._rows[shard_of(key, self.num_shards)].append((key, line, "", b""))
        self._bytes += 2 * len(line) + 200
        if self._bytes >= self.flush_bytes:
            yield from SpillFn._flush(self)

    def finish_bundle(self):
        for run in SpillFn._flush(self):
            yield GlobalWindows.windowed_value(run)


def _previous_exact_batches(batch, partitions: int):
    """Earlier outputs' (id, text_sha256) rows → exact-dedup batches with tagged ids."""
    yield from exact_batches([key for _, key in batch], [tag_previous(doc_id) for doc_id, _ in batch], partitions)


class ExactDedup(beam.PTransform):
    """Exact-dedup batches (and earlier outputs' (id, text_sha256)) → (id, (kept id, reason, key)) drops."""

    def __init__(self, partitions: int, previous=None, within: bool = True):
        super().__init__()
        self.partitions, self.previous, self.within = partitions, previous, within

    def expand(self, batches):
        if self.previous is not None:
            previous = (self.previous
                        | "BatchPrevious" >> beam.BatchElements(min_batch_size=2000, max_batch_size=2000)
                        | "PreviousKeys" >> beam.FlatMap(_previous_exact_batches, self.partitions))
            batches = (batches, previous) | "AllKeys" >> beam.Flatten()
        within = self.within
        return (
            batches
            | "GroupByKeyPartition" >> beam.GroupByKey()
            | "Duplicates" >> beam.FlatMap(
                lambda item: ((doc_id, (of, reason, key)) for doc_id, key, of, reason in exact_drops(item[1], within)))
        )


class _Counted:
    """A write-only stream that passes bytes on and keeps their count and SHA-256."""

    def __init__(self, handle):
        self.handle, self.sha256, self.size = handle, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.handle.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)

    def entry(self, name: str, records: int) -> dict:
        return {"file": name, "documents": records, "bytes": self.size, "sha256": self.sha256.hexdigest()}


def open_runs(runs: list[tuple[str, int]], row_bytes: int):
    """Sorted iterators over a shard's runs, and the file handles to close afterwards."""
    iterators, handles = [], []
    for base, _ in sorted(runs):
        ids, keys = decode_table(read_file(base + ".json"))
        docs = FileSystems.open(base + ".jsonl", compression_type=RAW)
        signatures = FileSystems.open(base + ".sig", compression_type=RAW) if row_bytes else None
        handles += [docs] + ([signatures] if signatures else [])
        iterators.append(iter_run(ids, keys, docs, signatures, row_bytes))
    return iterators, handles


def run_signatures(runs, row_bytes: int):
    """(ids, keys, signatures uint32 [rows, perm]) of each run of a shard, one run in memory at a time."""
    for base, _ in sorted(runs):
        ids, keys = decode_table(read_file(base + ".json"))
        yield ids, keys, read_signatures(read_file(base + ".sig"), row_bytes // 4)


class WriteShardFromRunsFn(beam.DoFn):
    """(shard, {runs, drops}) → the shard file's manifest entry; DROPPED records; INDEX entry."""

    DROPPED = "dropped"
    INDEX = "index"

    def __init__(self, staging_dir: str, count: int, level: int, row_bytes: int, index_bands: tuple[int, int] | None,
                 folder: str = "shards"):
        self.staging_dir, self.count, self.level = staging_dir, count, level
        self.row_bytes, self.index_bands, self.folder = row_bytes, index_bands, folder

    def process(self, item):
        shard, grouped = item
        drops = DropList(grouped.get("drops", ()))
        iterators, handles = open_runs(list(grouped["runs"]), self.row_bytes)
        name = shard_name(shard, self.count)
        kept = 0
        with tempfile.TemporaryFile() as index_file:
            index = IndexWriter(index_file, *self.index_bands) if self.index_bands else None
            with FileSystems.create(FileSystems.join(self.staging_dir, self.folder, name), compression_type=RAW) as handle:
                counted = _Counted(handle)
                compressor = zstandard.ZstdCompressor(level=self.level, write_checksum=True)
                with compressor.stream_writer(counted, closefd=False) as writer:
                    pending, size = [], 0
                    for doc_id, line, key, signature in merge_runs(iterators):
                        dropped = drops.take(doc_id, key) if drops else None
                        if dropped is not None:
                            yield beam.pvalue.TaggedOutput(self.DROPPED, _drop_record(doc_id, line, *dropped))
                            continue
                        kept += 1
                        if index:
                            index.add(doc_id, key, signature)
                        pending.append(line.encode("utf-8") + b"\n")
                        size += len(pending[-1])
                        if size >= 1 << 20:
                            writer.write(b"".join(pending))
                            pending, size = [], 0
                    writer.write(b"".join(pending))
            for opened in handles:
                opened.close()
            yield counted.entry(f"{self.folder}/{name}", kept)
            if index is None:
                return
            index.close()
            index_file.seek(0)
            index_path = f"{INDEX_FOLDER}/{index_name(name)}"
            with FileSystems.create(FileSystems.join(self.staging_dir, index_path), compression_type=RAW) as handle:
                counted = _Counted(handle)
                shutil.copyfileobj(index_file, counted, 1 << 20)
            yield beam.pvalue.TaggedOutput(self.INDEX, counted.entry(index_path, index.rows))


def _drop_record(doc_id: str, line: str, of: str, reason: str):
    Metrics.counter(NAMESPACE, f"dropped.{reason}").inc()
    record = {"id": doc_id, "source": json.loads(line).get("source"), "reason": reason, "duplicate_of": of}
    return ("dropped", reason, record)


class WriteShardsFromRuns(beam.PTransform):
    """(runs, drops) → `shards/part-NNNNN-of-MMMMM.jsonl.zst` sorted by id, and `index/`."""

    def __init__(self, staging_dir: str, count: int, level: int, row_bytes: int, index_bands: tuple[int, int] | None,
                 folder: str = "shards"):
        super().__init__()
        self.staging_dir, self.count, self.level = staging_dir, count, level
        self.row_bytes, self.index_bands, self.folder = row_bytes, index_bands, folder

    def expand(self, pcolls):
        runs, drops = pcolls if isinstance(pcolls, tuple) else (pcolls, None)
        count = self.count
        # Every shard index takes part, so empty shards are written too and the set is complete.
        grouped = {"index": runs.pipeline | "ShardIndices" >> beam.Create([(i, None) for i in range(count)]), "runs": runs}
        if drops is not None:
            grouped["drops"] = drops | "KeyDrops" >> beam.Map(lambda drop: (shard_of(drop[0], count), drop))
        return (
            grouped
            | "GroupRunsAndDrops" >> beam.CoGroupByKey()
            | "MergeRuns" >> beam.ParDo(WriteShardFromRunsFn(self.staging_dir, count, self.level, self.row_bytes,
                                                             self.index_bands, self.folder)).with_outputs(
                WriteShardFromRunsFn.DROPPED, WriteShardFromRunsFn.INDEX, main="entries")
        )
