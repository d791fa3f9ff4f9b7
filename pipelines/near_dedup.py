"""Beam near-duplicate removal: LSH band files per shard (from the signatures the spill step wrote
into the runs, `pipelines/spill_steps.py`), candidates per band, each verified on the full
signatures read from the runs, clusters as connected components over workers
(`pipelines/clustering.py`), and (with `--dedup-against`) candidates against earlier outputs' indexes."""

from __future__ import annotations

import json

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from corpus.index import is_previous, previous_candidates, untag
from corpus.minhash import (
    MinHashConfig,
    band_hashes,
    candidate_pairs,
    estimated_jaccard,
)
from corpus.shards import shard_of
from corpus.spill import BandFiles, DropList, encode_band_file, in_buckets
from pipelines.clustering import ConnectedComponents
from pipelines.spill_steps import read_file, run_signatures, write_file


class BandsFn(beam.DoFn):
    """(shard, {runs, exact drops}) → (band, band file): the band hashes and ids of the shard's
    documents that survived exact dedup, one file per band (`corpus.spill.encode_band_file`),
    computed from the signatures in the shard's runs. Neither signatures nor band hashes shuffle:
    only the files' names do.
    """

    def __init__(self, config: MinHashConfig, row_bytes: int, spill_dir: str):
        self.config, self.row_bytes, self.spill_dir = config, row_bytes, spill_dir

    def process(self, item):
        shard, grouped = item
        drops = DropList(grouped["exact"])
        ids, bands = [], []
        for run_ids, keys, signatures in run_signatures(grouped["runs"], self.row_bytes):
            keep = [not drops.is_exact(doc_id, key) for doc_id, key in zip(run_ids, keys)] if drops else [True] * len(run_ids)
            chosen = np.flatnonzero(keep)
            ids += [run_ids[i] for i in chosen]
            bands.append(band_hashes(signatures[chosen], self.config.bands, self.config.rows))
        bands = np.concatenate(bands) if bands else np.zeros((0, self.config.bands), dtype=np.uint64)
        for band in range(self.config.bands):
            path = FileSystems.join(self.spill_dir, "bands", f"band-{band:03d}", f"shard-{shard:05d}.npz")
            write_file(path, encode_band_file(bands[:, band], ids))
            yield (band, path)


def _band_candidates(item, ranges: int):
    """((band, range), {files, previous}) → candidate pairs of that band's hashes in that range."""
    (_, part), grouped = item
    files = BandFiles(read_file(path) for path in sorted(grouped["files"]))
    own = np.flatnonzero((files.hashes >> np.uint64(40)) % np.uint64(ranges) == part) if ranges > 1 else np.arange(len(files.hashes))
    previous = list(grouped.get("previous", ()))
    previous_hashes = [np.frombuffer(h, dtype=np.uint64) for h, _ in previous]
    hashes = np.concatenate([files.hashes[own], *previous_hashes])
    members = in_buckets(hashes)
    mine, theirs = members[members < len(own)], members[members >= len(own)] - len(own)
    previous_ids = [doc_id for _, batch_ids in previous for doc_id in json.loads(batch_ids)]
    ids = files.ids(own[mine]) + [previous_ids[i] for i in theirs.tolist()]
    yield from _candidates(hashes[members], ids)


def bucket_batches(ids: list[str], all_bands: np.ndarray, partitions: int):
    """Band hashes [docs, bands] of a batch → ((band, partition), (hashes bytes, ids JSON)) elements."""
    id_array = np.array(ids, dtype=object)
    for band in range(all_bands.shape[1]):
        hashes = np.ascontiguousarray(all_bands[:, band])
        part = (hashes >> np.uint64(40)) % np.uint64(partitions)
        for partition in np.unique(part):
            chosen = part == partition
            yield ((band, int(partition)), (hashes[chosen].tobytes(), json.dumps(id_array[chosen].tolist())))


def _previous_buckets(batch: list[tuple[str, list[int], bytes]], partitions: int):
    """A batch of earlier outputs' (tagged id, band hashes, signature) → the same bucket elements."""
    ids = [doc_id for doc_id, _, _ in batch]
    yield from bucket_batches(ids, np.array([bands for _, bands, _ in batch], dtype=np.uint64), partitions)


def _candidates(hashes: np.ndarray, ids: list[str]):
    """Documents of one band (and earlier outputs' documents) → candidate pairs (smaller id, larger id)."""
    earlier = np.fromiter((is_previous(doc_id) for doc_id in ids), dtype=bool, count=len(ids))
    if not earlier.any():
        yield from candidate_pairs(hashes, ids)
        return
    new = ~earlier
    yield from candidate_pairs(hashes[new], [doc_id for doc_id, keep in zip(ids, new) if keep])
    yield from previous_candidates(hashes, ids)


def _attach_signature(item):
    """An earlier output's candidate: (a, {signature, candidates b}) → (b, (a, signature a))."""
    doc_id, grouped = item
    signatures = list(grouped["signature"])
    if signatures:
        for other in grouped["candidates"]:
            yield (other, (doc_id, signatures[0]))


def _signatures_of(runs, wanted: set[str], row_bytes: int) -> dict[str, bytes]:
    """Signatures of the wanted ids, read from a shard's runs (the first row of an id wins)."""
    found: dict[str, bytes] = {}
    for ids, _, signatures in run_signatures(runs, row_bytes):
        for row, doc_id in enumerate(ids):
            if doc_id in wanted and doc_id not in found:
                found[doc_id] = signatures[row].tobytes()
    return found


def _attach_own_signature(item, row_bytes: int, count: int):
    """(shard, {runs, pairs (a, b) with a in the shard}) → (shard of b, (b, a, signature a))."""
    _, grouped = item
    pairs = list(grouped["pairs"])
    if pairs:
        found = _signatures_of(grouped["runs"], {a for a, _ in pairs}, row_bytes)
        for a, b in pairs:
            if a in found:
                yield (shard_of(b, count), (b, a, found[a]))


class _VerifyFn(beam.DoFn):
    """(shard, {runs, pending (b, a, signature a)}) → verified pairs (a, b)."""

    def __init__(self, threshold: float, row_bytes: int):
        self.threshold, self.row_bytes = threshold, row_bytes

    def process(self, item):
        _, grouped = item
        pending = list(grouped["pending"])
        if not pending:
            return
        found = _signatures_of(grouped["runs"], {b for b, _, _ in pending}, self.row_bytes)
        for b, a, signature in pending:
            if b in found:
                mine = np.frombuffer(found[b], dtype=np.uint32)
                if estimated_jaccard(mine, np.frombuffer(signature, dtype=np.uint32)) >= self.threshold:
                    yield (a, b)


class NearDedup(beam.PTransform):
    """MinHash LSH near-duplicate detection → (id, (kept id, reason, None)) for every document to drop.

    Input: (runs, exact drops). Band hashes come from each shard's runs (without the exact
    duplicates), candidates from LSH buckets; each candidate pair is verified on the full
    signatures, which are read from the runs of the shards of its two ends (a candidate carries
    one signature through one shuffle; the corpus's signatures never do). The verified pairs are
    merged into clusters over workers in `rounds` rounds of GroupByKey (`pipelines.clustering`);
    each cluster keeps its smallest id.
    """

    def __init__(self, config: MinHashConfig, partitions: int, rounds: int, num_shards: int, spill_dir: str,
                 previous=None, batch_size: int = 2000):
        super().__init__()
        self.config = config
        self.partitions = partitions  # hash ranges each band's candidates are split into
        self.spill_dir = spill_dir
        self.rounds = rounds
        self.num_shards = num_shards
        self.previous = previous  # (tagged id, band hashes, signature) of earlier outputs, or None
        self.batch_size = batch_size

    def expand(self, pcolls):
        runs, exact = pcolls
        count, row_bytes, ranges = self.num_shards, 4 * self.config.num_perm, self.partitions
        band_files = (
            {"runs": runs, "exact": exact | "KeyExact" >> beam.Map(lambda drop: (shard_of(drop[0], count), drop))}
            | "GroupRunsAndExact" >> beam.CoGroupByKey()
            | "Bands" >> beam.ParDo(BandsFn(self.config, row_bytes, self.spill_dir))
            | "BandRanges" >> beam.FlatMapTuple(lambda band, path: (((band, part), path) for part in range(ranges)))
        )
        buckets = {"files": band_files}
        if self.previous is not None:
            buckets["previous"] = (
                self.previous
                | "BatchPrevious" >> beam.BatchElements(min_batch_size=self.batch_size, max_batch_size=self.batch_size)
                | "PreviousBuckets" >> beam.FlatMap(_previous_buckets, ranges)
            )
        candidates = (
            buckets
            | "GroupBands" >> beam.CoGroupByKey()
            | "Candidates" >> beam.FlatMap(_band_candidates, ranges)
            | "DistinctCandidates" >> beam.Distinct()
        )
        split = candidates | "SplitCandidates" >> beam.Partition(lambda pair, _: int(is_previous(pair[0])), 2)
        pending = (
            {"runs": runs, "pairs": split[0] | "KeyFirst" >> beam.Map(lambda pair: (shard_of(pair[0], count), pair))}
            | "JoinFirst" >> beam.CoGroupByKey()
            | "AttachFirst" >> beam.FlatMap(_attach_own_signature, row_bytes, count)
        )
        if self.previous is not None:
            previous_signatures = self.previous | "PreviousSignatures" >> beam.Map(lambda row: (row[0], row[2]))
            from_previous = (
                {"signature": previous_signatures, "candidates": split[1]}
                | "JoinPrevious" >> beam.CoGroupByKey()
                | "AttachPrevious" >> beam.FlatMap(_attach_signature)
                | "KeyPrevious" >> beam.MapTuple(lambda b, attached: (shard_of(b, count), (b, *attached)))
            )
            pending = (pending, from_previous) | "AllPending" >> beam.Flatten()
        verified = (
            {"runs": runs, "pending": pending}
            | "JoinSecond" >> beam.CoGroupByKey()
            | "Verify" >> beam.ParDo(_VerifyFn(self.config.threshold, row_bytes))
        )
        if self.previous is None:
            return (verified | "Clusters" >> ConnectedComponents(self.rounds)
                    | "NearReason" >> beam.MapTuple(lambda doc_id, root: (doc_id, (root, "near_duplicate", None))))
        split = verified | "SplitPrevious" >> beam.Partition(lambda pair, _: int(is_previous(pair[0])), 2)
        own = split[0] | "Clusters" >> ConnectedComponents(self.rounds)
        of_previous = (
            split[1]
            | "NewToEarlier" >> beam.MapTuple(lambda earlier, new: (new, untag(earlier)))
            | "SmallestEarlier" >> beam.CombinePerKey(min)
        )
        return (
            own | "NearReason" >> beam.MapTuple(lambda doc_id, root: (doc_id, (root, "near_duplicate", None))),
            of_previous | "PreviousReason" >> beam.MapTuple(
                lambda doc_id, earlier: (doc_id, (earlier, "near_duplicate_of_previous", None))),
        ) | "AllNearDrops" >> beam.Flatten()
