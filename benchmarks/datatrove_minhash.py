"""datatrove's MinHash dedup on the corpus benchmark's input, as a fair rival: the same character
5-grams over the same `canonical_text`, the same bands x rows, the same number of workers. It runs in
its own process: `python -m benchmarks.datatrove_minhash JOB_JSON` (needs `pip install -e '.[bench]'`)."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import zstandard

from benchmarks.measured_run import run_measured
from benchmarks.near_dup_scoring import near_dup_precision, planted_recall, read_texts
from corpus.minhash import MinHashConfig, canonical_text


def character_minhash_signature(output_folder: str, ngram: int, bands: int, rows: int):
    """datatrove's signature step (stage 1) shingling the character n-grams our MinHasher uses.

    datatrove shingles word n-grams of its own `simplify_text`; here `get_shingles` takes character
    n-grams of `canonical_text` instead, hashed one by one with datatrove's hash function as
    datatrove does for words. A character "word tokenizer" is passed too: the default one (for
    English) needs spaCy, and words are the wrong unit for Korean anyway.
    """
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
    from datatrove.utils.word_tokenizers import WordTokenizer

    class CharacterTokenizer(WordTokenizer):
        def word_tokenize(self, text: str) -> list[str]:
            return list(canonical_text(text))

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    class CharacterMinhashSignature(MinhashDedupSignature):
        def get_shingles(self, text: str) -> np.ndarray:
            canon, n = canonical_text(text), self.config.n_grams
            grams = [canon] if 0 < len(canon) < n else [canon[i : i + n] for i in range(len(canon) - n + 1)]
            # Bytes: datatrove passes str, which the installed xxhash 4 refuses (datatrove's
            # `processing` extra asks for xxhash < 4).
            hash_func = self._hash_func
            hashes = np.fromiter((hash_func(g.encode("utf-8")) for g in grams), dtype=np.uint64, count=len(grams))
            return hashes.reshape((-1, 1))

    config = MinhashConfig(n_grams=ngram, num_buckets=bands, hashes_per_bucket=rows)
    return CharacterMinhashSignature(output_folder, config=config, language=CharacterTokenizer())


def datatrove_job(spec: dict) -> None:
    """datatrove's 4 MinHash stages on JSONL input, character n-grams over `canonical_text`."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    out, tasks = spec["output"], spec["workers"]
    signature = character_minhash_signature(f"{out}/signatures", spec["ngram"], spec["bands"], spec["rows"])
    config = signature.config
    logs = f"{out}/logs"

    def reader():
        return JsonlReader(spec["input"], glob_pattern="*.jsonl", text_key="text", id_key="id")

    stages = {
        "signatures": LocalPipelineExecutor(
            [reader(), signature],
            tasks=tasks, workers=tasks, logging_dir=f"{logs}/signatures", skip_completed=False),
        "buckets": LocalPipelineExecutor(
            [MinhashDedupBuckets(f"{out}/signatures", f"{out}/buckets", config=config)],
            tasks=config.num_buckets, workers=tasks, logging_dir=f"{logs}/buckets", skip_completed=False),
        "cluster": LocalPipelineExecutor(
            [MinhashDedupCluster(f"{out}/buckets", f"{out}/remove_ids", config=config, save_cluster_id=True)],
            tasks=1, workers=1, logging_dir=f"{logs}/cluster", skip_completed=False),
        "filter": LocalPipelineExecutor(
            [reader(),
             MinhashDedupFilter(f"{out}/remove_ids", load_cluster_ids=True,
                                exclusion_writer=JsonlWriter(f"{out}/removed", compression="zstd")),
             JsonlWriter(f"{out}/deduplicated", compression="zstd")],
            tasks=tasks, workers=tasks, logging_dir=f"{logs}/filter", skip_completed=False),
    }
    seconds = {}
    for name, executor in stages.items():
        started = time.perf_counter()
        executor.run()
        seconds[name] = round(time.perf_counter() - started, 2)
    Path(out, "stage_seconds.json").write_text(json.dumps(seconds) + "\n")


def run_datatrove(input_dir: Path, output: Path, workers: int, config: MinHashConfig, log_dir: Path) -> dict:
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    job = {"input": str(input_dir), "output": str(output), "workers": workers,
           "ngram": config.ngram, "bands": config.bands, "rows": config.rows}
    command = [sys.executable, "-m", "benchmarks.datatrove_minhash", json.dumps(job)]
    measured = run_measured(command, log_dir / f"{output.name}.log")
    measured["stage_seconds"] = json.loads((output / "stage_seconds.json").read_text())
    return measured


def datatrove_outputs(output: Path) -> tuple[dict[str, int], dict[int, str]]:
    """(removed id -> cluster id, cluster id -> kept id) from datatrove's output and exclusion files."""
    removed, kept = {}, {}
    for folder, target in (("removed", removed), ("deduplicated", kept)):
        for path in sorted((output / folder).glob("*.jsonl.zst")):
            with zstandard.open(path, "rt", encoding="utf-8") as handle:
                for line in handle:
                    doc = json.loads(line)
                    cluster = doc.get("metadata", {}).get("minhash_cluster_id", -1)
                    if folder == "removed":
                        target[doc["id"]] = cluster
                    elif cluster != -1:
                        target[cluster] = doc["id"]
    return removed, kept


def evaluate_datatrove(output: Path, input_files: list[Path], planted: list[dict]) -> dict:
    removed, kept = datatrove_outputs(output)
    drops = sorted((doc_id, kept[cluster]) for doc_id, cluster in removed.items() if cluster in kept)
    texts = read_texts(input_files, {doc_id for pair in drops for doc_id in pair})
    return {"precision": near_dup_precision(drops, texts), "recall": planted_recall(planted, dict.fromkeys(removed), set())}



if __name__ == "__main__":
    datatrove_job(json.loads(sys.argv[1]))
