"""Beam near-duplicate removal: MinHash signatures per batch, LSH band buckets, candidates verified
on the full signature, clusters as connected components over workers (`pipelines/clustering.py`),
and (with `--dedup-against`) candidates against earlier outputs' indexes."""

from __future__ import annotations


import apache_beam as beam
import numpy as np

from corpus.index import is_previous, previous_candidates, untag
from corpus.minhash import (
    MinHashConfig,
    MinHasher,
    band_hashes,
    candidate_pairs,
    estimated_jaccard,
)
from pipelines.clustering import ConnectedComponents

class SignBatchFn(beam.DoFn):
    """A batch of documents → per-id signatures, and per-(band, partition) arrays of band hashes.

    Band hashes travel as one numpy array per batch and band, not one element per document and
    band: the bucket shuffle then moves bands × partitions × batches elements instead of
    bands × documents, which is what makes Python Beam fast enough here.
    """

    SIGNATURES = "signatures"

    def __init__(self, config: MinHashConfig, partitions: int):
        self.config = config
        self.partitions = partitions

    def setup(self):
        self.hasher = MinHasher(self.config)

    def process(self, batch: list[dict]):
        ids = [doc["id"] for doc in batch]
        signatures = self.hasher.signatures([doc["text"] for doc in batch])
        for doc_id, signature in zip(ids, signatures):
            yield beam.pvalue.TaggedOutput(self.SIGNATURES, (doc_id, signature.tobytes()))
        yield from bucket_batches(ids, band_hashes(signatures, self.config.bands, self.config.rows), self.partitions)


def bucket_batches(ids: list[str], all_bands: np.ndarray, partitions: int):
    """Band hashes [docs, bands] of a batch → ((band, partition), (hashes bytes, ids)) elements."""
    id_array = np.array(ids, dtype=object)
    for band in range(all_bands.shape[1]):
        hashes = np.ascontiguousarray(all_bands[:, band])
        part = (hashes >> np.uint64(40)) % np.uint64(partitions)
        for partition in np.unique(part):
            chosen = part == partition
            yield ((band, int(partition)), (hashes[chosen].tobytes(), id_array[chosen].tolist()))


def _previous_buckets(batch: list[tuple[str, list[int], bytes]], partitions: int):
    """A batch of earlier outputs' (tagged id, band hashes, signature) → the same bucket elements."""
    ids = [doc_id for doc_id, _, _ in batch]
    yield from bucket_batches(ids, np.array([bands for _, bands, _ in batch], dtype=np.uint64), partitions)


def _bucket_candidates(item):
    """All documents of one (band, partition) → candidate pairs (smaller id, larger id)."""
    _, batches = item
    hashes = np.concatenate([np.frombuffer(h, dtype=np.uint64) for h, _ in batches])
    ids = [doc_id for _, batch_ids in batches for doc_id in batch_ids]
    earlier = np.fromiter((is_previous(doc_id) for doc_id in ids), dtype=bool, count=len(ids))
    if not earlier.any():
        yield from candidate_pairs(hashes, ids)
        return
    new = ~earlier
    yield from candidate_pairs(hashes[new], [doc_id for doc_id, keep in zip(ids, new) if keep])
    yield from previous_candidates(hashes, ids)


def _attach_signature(item):
    """First half of the candidate join: (a, {signature, candidates b}) → (b, (a, signature a))."""
    doc_id, grouped = item
    signatures = list(grouped["signature"])
    if signatures:
        for other in grouped["candidates"]:
            yield (other, (doc_id, signatures[0]))


class _VerifyFn(beam.DoFn):
    """Second half of the candidate join: (b, {signature, (a, sig a)}) → verified pairs (a, b)."""

    def __init__(self, threshold: float):
        self.threshold = threshold

    def process(self, item):
        doc_id, grouped = item
        signatures = list(grouped["signature"])
        if not signatures:
            return
        mine = np.frombuffer(signatures[0], dtype=np.uint32)
        for other_id, other_signature in grouped["pending"]:
            if estimated_jaccard(mine, np.frombuffer(other_signature, dtype=np.uint32)) >= self.threshold:
                yield (other_id, doc_id)


class NearDedup(beam.PTransform):
    """MinHash LSH near-duplicate detection → (id, kept id) for every document to drop.

    Candidates come from LSH buckets, are verified on full signatures (two joins by id), and the
    verified pairs are merged into clusters over workers in `rounds` rounds of GroupByKey
    (`pipelines.clustering`); each cluster keeps its smallest id.
    """

    def __init__(self, config: MinHashConfig, partitions: int, rounds: int, previous=None, batch_size: int = 2000):
        super().__init__()
        self.config = config
        self.partitions = partitions
        self.rounds = rounds
        self.previous = previous  # (tagged id, band hashes, signature) of earlier outputs, or None
        self.batch_size = batch_size

    def expand(self, docs):
        signed = (
            docs
            | "Batch" >> beam.BatchElements(min_batch_size=self.batch_size, max_batch_size=self.batch_size)
            | "Sign" >> beam.ParDo(SignBatchFn(self.config, self.partitions)).with_outputs(
                SignBatchFn.SIGNATURES, main="bands"
            )
        )
        signatures = signed[SignBatchFn.SIGNATURES]
        own_signatures, bands = signatures, signed.bands
        if self.previous is not None:
            previous_bands = (
                self.previous
                | "BatchPrevious" >> beam.BatchElements(min_batch_size=self.batch_size, max_batch_size=self.batch_size)
                | "PreviousBuckets" >> beam.FlatMap(_previous_buckets, self.partitions)
            )
            bands = (bands, previous_bands) | "AllBuckets" >> beam.Flatten()
            previous_signatures = self.previous | "PreviousSignatures" >> beam.Map(lambda row: (row[0], row[2]))
            signatures = (signatures, previous_signatures) | "AllSignatures" >> beam.Flatten()
        candidates = (
            bands
            | "GroupBuckets" >> beam.GroupByKey()
            | "Candidates" >> beam.FlatMap(_bucket_candidates)
            | "DistinctCandidates" >> beam.Distinct()
        )
        pending = (
            {"signature": signatures, "candidates": candidates}
            | "JoinFirst" >> beam.CoGroupByKey()
            | "AttachFirst" >> beam.FlatMap(_attach_signature)
        )
        verified = (
            {"signature": signatures, "pending": pending}
            | "JoinSecond" >> beam.CoGroupByKey()
            | "Verify" >> beam.ParDo(_VerifyFn(self.config.threshold))
        )
        if self.previous is None:
            drops = (verified | "Clusters" >> ConnectedComponents(self.rounds)
                     | "NearReason" >> beam.MapTuple(lambda doc_id, root: (doc_id, (root, "near_duplicate"))))
            return drops, own_signatures
        split = verified | "SplitPrevious" >> beam.Partition(lambda pair, _: int(is_previous(pair[0])), 2)
        own = split[0] | "Clusters" >> ConnectedComponents(self.rounds)
        of_previous = (
            split[1]
            | "NewToEarlier" >> beam.MapTuple(lambda earlier, new: (new, untag(earlier)))
            | "SmallestEarlier" >> beam.CombinePerKey(min)
        )
        drops = (
            own | "NearReason" >> beam.MapTuple(lambda doc_id, root: (doc_id, (root, "near_duplicate"))),
            of_previous | "PreviousReason" >> beam.MapTuple(lambda doc_id, earlier: (doc_id, (earlier, "near_duplicate_of_previous"))),
        ) | "AllNearDrops" >> beam.Flatten()
        return drops, own_signatures
