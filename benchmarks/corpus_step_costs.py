"""What each per-document step of the corpus job costs alone, in one process: MinHash signatures
(ours and datatrove's) and CPU seconds per input MB of normalize, PII, filters, keys and shards."""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from pathlib import Path

from benchmarks.datatrove_minhash import character_minhash_signature
from benchmarks.measured_run import MB
from benchmarks.near_dup_scoring import QUALITY
from corpus.clean import text_key
from corpus.filters import quality_drop_reason
from corpus.minhash import MinHashConfig, MinHasher
from corpus.normalize import normalize_text
from corpus.pii import scrub_pii
from corpus.records import ReadOptions, read_input
from corpus.shards import encode_shard


def minhash_throughput(input_files: list[Path], max_docs: int, config: MinHashConfig, with_datatrove: bool) -> dict:
    texts = []
    for path in input_files:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                texts.append(json.loads(line)["text"])
                if len(texts) >= max_docs:
                    break
        if len(texts) >= max_docs:
            break
    hasher = MinHasher(config)
    size = sum(len(text.encode("utf-8")) for text in texts)
    hasher.signatures(texts[:100])  # warm-up
    started, cpu_started = time.perf_counter(), time.process_time()
    for start in range(0, len(texts), 2000):
        hasher.signatures(texts[start : start + 2000])
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    result = {"documents": len(texts), "mb": round(size / MB, 2), "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
              "docs_per_s": round(len(texts) / seconds, 1), "mb_per_s": round(size / MB / seconds, 3),
              "mb_per_cpu_s": round(size / MB / cpu, 3), "num_perm": config.num_perm, "batch": 2000}
    if with_datatrove:
        # datatrove's per-document signature (shingles + permutations) on a slice of the same texts.
        sample = texts[: max(1, len(texts) // 10)]
        sample_mb = sum(len(text.encode("utf-8")) for text in sample) / MB
        with tempfile.TemporaryDirectory() as scratch:
            step = character_minhash_signature(scratch, config.ngram, config.bands, config.rows)
            cpu_started = time.process_time()
            for text in sample:
                step.get_signature(step.get_shingles(text))
            cpu = time.process_time() - cpu_started
        result["datatrove"] = {"documents": len(sample), "mb": round(sample_mb, 2), "cpu_seconds": round(cpu, 2),
                               "mb_per_cpu_s": round(sample_mb / cpu, 3)}
    return result


def step_costs(input_file: Path, max_docs: int, config: MinHashConfig) -> dict:
    """CPU seconds per input MB of each pure per-document step, in one process, on one input file.

    Their sum against the pipeline's CPU seconds per MB shows what Beam itself (encoding, shuffles,
    worker processes) costs on top.
    """
    with open(input_file, "rb") as stream:
        records = [record for kind, record in itertools.islice(read_input(str(input_file), stream, ReadOptions()), max_docs)
                   if kind == "doc"]
    size = sum(len(json.dumps(record, ensure_ascii=False).encode("utf-8")) for record in records) / MB
    texts = [record["text"] for record in records]
    costs = {}

    def timed(name, function):
        started = time.process_time()
        result = function()
        costs[name] = round((time.process_time() - started) / size, 4)
        return result

    with open(input_file, "rb") as stream:
        timed("read (JSON parse)", lambda: sum(1 for _ in itertools.islice(read_input(str(input_file), stream, ReadOptions()), max_docs)))
    normalized = timed("normalize_text", lambda: [normalize_text(text) for text in texts])
    scrubbed = timed("scrub_pii", lambda: [scrub_pii(text)[0] for text in normalized])
    timed("quality_drop_reason", lambda: [quality_drop_reason(text, QUALITY) for text in scrubbed])
    timed("exact-dedup key (sha256)", lambda: [text_key(text) for text in scrubbed])
    hasher = MinHasher(config)
    timed("MinHash signatures", lambda: [hasher.signatures(scrubbed[i : i + 2000]) for i in range(0, len(scrubbed), 2000)])
    shard = [{**record, "text": text} for record, text in zip(records, scrubbed)]
    timed("shard encode (JSON + zstd 10)", lambda: encode_shard(shard, 10))
    return {"documents": len(records), "mb": round(size, 2), "cpu_seconds_per_mb": costs,
            "sum_cpu_seconds_per_mb": round(sum(costs.values()), 4)}

