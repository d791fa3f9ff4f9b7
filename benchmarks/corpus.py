"""Corpus-stage benchmark: end-to-end throughput, MinHash speed, memory, near-dup quality, datatrove.

    python benchmarks/corpus.py            # full run (~20 min on 2 cores): ko-train + a >= 200 MB input
    python benchmarks/corpus.py --quick    # smoke run on a small synthetic input (~2 min)
    python benchmarks/corpus.py --scale    # 0.2, 1 and 4 GB synthetic inputs, 2 workers: memory slope

What it measures (a table on stdout, everything in benchmarks/results/corpus.json):
1. `python -m pipelines.corpus` end to end (process start to exit, default config: normalize, PII,
   quality filters, exact dedup, MinHash near dedup 20 bands x 10 rows over character 5-grams,
   zstd shards) with `--direct_num_workers` 1 and 2, on ../shared/data/ko-train and on a larger
   input built from ko-train: synthetic documents of 5-20 random ko-train lines (seeded) as
   several .jsonl files, plus planted near duplicates (copies with words replaced, inserted or
   deleted) whose true character-5-gram Jaccard on `canonical_text` of the cleaned text is
   recorded. The built input is cached in the work dir.
2. MinHash signatures alone (`corpus.minhash.MinHasher`, one process, batches of 2,000).
3. Peak RSS of the whole process tree (the Beam or datatrove workers are subprocesses): psutil
   polls the tree every 0.2 s and takes the largest sum of RSS; `getrusage(RUSAGE_CHILDREN)` is
   reported too, but it is the largest *single* waited-for process, not the sum.
4. Near-dup recall on planted pairs with true Jaccard >= 0.85 (found = not both kept; pairs where
   either document left for another reason, e.g. a quality filter, are not counted) and precision
   (of all near_duplicate drops, the share whose true Jaccard with the document it was deduplicated
   against is >= 0.7).
5. datatrove's MinHash dedup (signature, buckets, cluster, filter with LocalPipelineExecutor) on the
   same input with the same character 5-grams over the same `canonical_text`, the same bands x rows,
   and the same number of tasks/workers. datatrove only deduplicates (no normalize, PII, filters,
   exact dedup, sharding) and does not verify LSH candidates on full signatures.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# `python benchmarks/corpus.py` puts benchmarks/ first on sys.path, where this file would shadow the
# `corpus` package: the repository root must come first.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "benchmarks"]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import zstandard  # noqa: E402
from tqdm import tqdm  # noqa: E402

from corpus.clean import clean_document, text_key  # noqa: E402
from corpus.filters import QualityConfig, quality_drop_reason  # noqa: E402
from corpus.minhash import MinHashConfig, MinHasher, canonical_text  # noqa: E402
from corpus.normalize import normalize_text  # noqa: E402
from corpus.pii import scrub_pii  # noqa: E402
from corpus.records import ReadOptions, read_input  # noqa: E402
from corpus.shards import encode_shard  # noqa: E402

DATA = REPO.parent / "shared" / "data"
KO_TRAIN = DATA / "ko-train"
RESULTS = REPO / "benchmarks" / "results"
MB = 1_000_000
RECALL_MIN_JACCARD = 0.85  # planted pairs at or above this must be found
PRECISION_MIN_JACCARD = 0.7  # a near_duplicate drop is correct when its true Jaccard is at least this
RECALL_TARGET, PRECISION_TARGET = 0.95, 0.99
QUALITY = QualityConfig()


class BenchmarkError(RuntimeError):
    """A step of the benchmark could not run; printed as one line."""


# --------------------------------------------------------------------------------------------------
# Ground truth: cleaned text, shingles and Jaccard exactly as the pipeline sees them


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


# --------------------------------------------------------------------------------------------------
# The large input, built from ko-train


@dataclass(frozen=True)
class SyntheticSpec:
    target_mb: float = 200.0  # input bytes (UTF-8 JSONL) at least this
    files: int = 8
    min_lines: int = 5
    max_lines: int = 20
    near_dup_share: float = 0.015  # planted copies per base document
    min_jaccard: float = 0.6  # planted pairs' target Jaccard, uniform in [min, max]
    max_jaccard: float = 0.98
    seed: int = 1234

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


def ko_train_lines() -> list[str]:
    files = sorted(KO_TRAIN.glob("*.txt"))
    if not files:
        raise BenchmarkError(f"{KO_TRAIN}: no .txt files (the shared ko-train data is missing)")
    lines = []
    for path in files:
        lines.extend(line for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return lines


def _apply_edits(lines: list[list[str]], edits: list[tuple[str, float, float, str]]) -> str:
    """Word edits (kind, line position, word position, new word) applied in order to a copy."""
    lines = [list(line) for line in lines]
    for kind, line_at, word_at, word in edits:
        line = lines[int(line_at * len(lines))]
        position = int(word_at * len(line))
        if kind == "insert" or not line:
            line.insert(position, word)
        elif kind == "delete" and len(line) > 1:
            del line[position]
        else:
            line[position] = word
    return "\n".join(" ".join(line) for line in lines)


def make_near_duplicate(text: str, target: float, words: list[str], rng: random.Random) -> tuple[str, float, int]:
    """A copy of `text` with the fewest random word edits that bring its true Jaccard to <= target.

    Jaccard falls (almost) monotonically with the number of edits of one random edit sequence, so
    a binary search over the sequence's prefix length needs ~8 Jaccard computations, not one per edit.
    """
    lines = [line.split(" ") for line in text.split("\n")]
    edits = [
        (rng.choice(("replace", "insert", "delete")), rng.random(), rng.random(), rng.choice(words))
        for _ in range(400)
    ]
    original = shingle_set(cleaned(text)[0])
    low, high = 1, len(edits)
    while low < high:
        middle = (low + high) // 2
        if jaccard(original, shingle_set(cleaned(_apply_edits(lines, edits[:middle]))[0])) <= target:
            high = middle
        else:
            low = middle + 1
    copy = _apply_edits(lines, edits[:low])
    return copy, jaccard(original, shingle_set(cleaned(copy)[0])), low


def build_large_input(work_dir: Path, spec: SyntheticSpec) -> Path:
    """`work_dir/synthetic-KEY/` with docs/*.jsonl and planted.json; reused when already complete."""
    folder = work_dir / f"synthetic-{spec.key()}"
    if (folder / "spec.json").is_file():
        return folder
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "docs").mkdir(parents=True)
    rng = random.Random(spec.seed)
    lines = ko_train_lines()
    words = [word for line in rng.sample(lines, 20_000) for word in line.split() if len(word) > 1]

    texts: list[str] = []
    total = 0
    target_bytes = spec.target_mb * MB / (1 + spec.near_dup_share)
    with tqdm(total=int(target_bytes), unit="B", unit_scale=True, desc="build base documents", file=sys.stderr) as bar:
        while total < target_bytes:
            text = "\n".join(rng.choice(lines) for _ in range(rng.randint(spec.min_lines, spec.max_lines)))
            texts.append(text)
            size = len(text.encode("utf-8")) + 40  # + the JSON around it, roughly
            total += size
            bar.update(size)
    originals = rng.sample(range(len(texts)), round(len(texts) * spec.near_dup_share))
    planted = []
    for index in tqdm(originals, desc="plant near duplicates", file=sys.stderr):
        target = rng.uniform(spec.min_jaccard, spec.max_jaccard)
        copy, true_jaccard, edits = make_near_duplicate(texts[index], target, words, rng)
        planted.append({"original": index, "copy": len(texts), "jaccard": round(true_jaccard, 6), "edits": edits})
        texts.append(copy)
    # Ids in a shuffled order: copies sit among the originals, and either one of a pair may be the
    # smaller id (the one the pipeline keeps).
    order = list(range(len(texts)))
    rng.shuffle(order)
    ids = {index: f"syn-{rank:08d}" for rank, index in enumerate(order)}
    for pair in planted:
        pair["original"], pair["copy"] = ids[pair["original"]], ids[pair["copy"]]
    per_file = -(-len(texts) // spec.files)
    for number in range(spec.files):
        with open(staging / "docs" / f"part-{number:02d}.jsonl", "w", encoding="utf-8") as handle:
            for rank in range(number * per_file, min(len(texts), (number + 1) * per_file)):
                record = {"id": f"syn-{rank:08d}", "text": texts[order[rank]], "source": "synthetic-ko-train"}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    (staging / "planted.json").write_text(json.dumps(planted, indent=0) + "\n")
    summary = {**asdict(spec), "documents": len(texts), "planted_pairs": len(planted),
               "bytes": sum(path.stat().st_size for path in (staging / "docs").iterdir())}
    (staging / "spec.json").write_text(json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)
    return folder


# --------------------------------------------------------------------------------------------------
# Running a command and watching its process tree


def run_measured(command: list[str], log_path: Path) -> dict:
    """Run `command` (cwd = repo) to completion; wall time, CPU seconds, peak tree RSS, machine load."""
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before = psutil.cpu_times()
    load_before = os.getloadavg()
    started = time.perf_counter()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        root = psutil.Process(process.pid)
        peak_tree = peak_single = 0
        cpu_by_pid: dict[int, float] = {}  # last seen user+system seconds of every process of the tree
        while process.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            rss = []
            for proc in tree:
                try:
                    with proc.oneshot():
                        rss.append(proc.memory_info().rss)
                        times = proc.cpu_times()
                    cpu_by_pid[proc.pid] = times.user + times.system
                except psutil.NoSuchProcess:
                    pass
            peak_tree, peak_single = max(peak_tree, sum(rss)), max(peak_single, max(rss, default=0))
            time.sleep(0.2)
        code = process.wait()
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_after = psutil.cpu_times()
    # RUSAGE_CHILDREN counts only descendants that were waited for (not datatrove's pool workers,
    # children of its forkserver); the polled sum misses a process's last < 0.2 s. Take the larger.
    own_cpu = max((usage.ru_utime - usage_before.ru_utime) + (usage.ru_stime - usage_before.ru_stime),
                  sum(cpu_by_pid.values()))
    busy = sum(getattr(cpu_after, f) - getattr(cpu_before, f) for f in ("user", "system", "nice", "irq", "softirq", "steal"))
    if code != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise BenchmarkError(f"{' '.join(command[:4])} ... exited {code}: {tail[0]} (log: {log_path})")
    return {
        "seconds": round(wall, 2),
        "cpu_seconds": round(own_cpu, 2),
        "peak_rss_tree_mb": round(peak_tree / MB, 1),
        "peak_rss_single_process_mb": round(peak_single / MB, 1),
        "rusage_children_maxrss_mb": round(usage.ru_maxrss * 1024 / MB, 1),  # largest single descendant so far
        # Cores used by everything else on the machine meanwhile (other engineers' jobs).
        "other_load_cores": round(max(0.0, busy - own_cpu) / wall, 2),
        "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }


def input_size(paths: list[Path]) -> tuple[int, int]:
    """(documents, bytes) of the input files: every non-empty line is one record."""
    documents = size = 0
    for path in paths:
        data = path.read_bytes()
        size += len(data)
        documents += sum(1 for line in data.split(b"\n") if line.strip())
    return documents, size


# --------------------------------------------------------------------------------------------------
# Our pipeline


def run_ours(input_dir: Path, output: Path, workers: int, num_shards: int, log_dir: Path) -> dict:
    shutil.rmtree(output, ignore_errors=True)
    command = [sys.executable, "-m", "pipelines.corpus", "--input", str(input_dir), "--output", str(output),
               "--num-shards", str(num_shards), f"--direct_num_workers={workers}"]
    measured = run_measured(command, log_dir / f"{output.name}.log")
    stats = json.loads((output / "stats.json").read_text(encoding="utf-8"))
    return {**measured, "stats": {k: stats[k] for k in ("input_records", "kept", "dropped", "rejected")}}


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


def evaluate_ours(output: Path, input_files: list[Path], planted: list[dict] | None) -> dict:
    records = rejected_records(output)
    near = {doc_id: r["duplicate_of"] for doc_id, r in records.items() if r.get("reason") == "near_duplicate"}
    other = {doc_id for doc_id, r in records.items() if r.get("reason") != "near_duplicate"}
    texts = read_texts(input_files, set(near) | set(near.values()))
    result = {"precision": near_dup_precision(sorted(near.items()), texts)}
    if planted is not None:
        result["recall"] = planted_recall(planted, near, other)
    return result


# --------------------------------------------------------------------------------------------------
# datatrove (runs in its own process: `--datatrove-job`)


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
    command = [sys.executable, str(Path(__file__).resolve()), "--datatrove-job", json.dumps(job)]
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


# --------------------------------------------------------------------------------------------------
# MinHash signatures alone


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


# --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/corpus.py",
        description="Benchmark the corpus stage (pipelines.corpus) against datatrove's MinHash dedup; "
        "prints a table and writes JSON.",
    )
    parser.add_argument("--quick", action="store_true", help="small smoke run: a 6 MB synthetic input, 2 workers, no ko-train")
    parser.add_argument("--out", type=Path, default=RESULTS / "corpus.json", help="JSON results (default: %(default)s)")
    parser.add_argument("--work-dir", type=Path, default=RESULTS / "corpus-work",
                        help="built inputs (cached) and run outputs (default: %(default)s)")
    parser.add_argument("--large-mb", type=float, help="size of the synthetic input in MB (default: 200; --quick: 6)")
    parser.add_argument("--workers", type=int, nargs="+", help="worker counts to run (default: 1 2; --quick: 2)")
    parser.add_argument("--no-ko-train", action="store_true", help="skip the runs on ko-train itself")
    parser.add_argument("--no-datatrove", action="store_true", help="skip datatrove")
    parser.add_argument("--keep-outputs", action="store_true", help="keep the run outputs in the work dir")
    parser.add_argument("--scale", action="store_true",
                        help="scaling run: synthetic inputs of --scale-gb sizes with --workers (default 2) workers; "
                        "per size docs/s, MB/s, peak RSS, recall/precision, and the slope of peak RSS against input size "
                        "(JSON: benchmarks/results/corpus-scale.json unless --out)")
    parser.add_argument("--scale-gb", type=float, nargs="+", default=[0.2, 1.0, 4.0], metavar="GB",
                        help="input sizes of --scale in GB (default: %(default)s)")
    parser.add_argument("--delete-inputs", action="store_true",
                        help="with --scale: delete each built input of 1 GB or more once it has been measured")
    parser.add_argument("--datatrove-job", help=argparse.SUPPRESS)  # internal: one datatrove run
    return parser


def throughput(run: dict, documents: int, size: int) -> dict:
    return {"docs_per_s": round(documents / run["seconds"], 1), "mb_per_s": round(size / MB / run["seconds"], 3),
            "mb_per_cpu_s": round(size / MB / run["cpu_seconds"], 3)}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.datatrove_job:
        datatrove_job(json.loads(args.datatrove_job))
        return 0
    try:
        return scale(args) if args.scale else benchmark(args)
    except BenchmarkError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2


def benchmark(args: argparse.Namespace) -> int:
    large_mb = args.large_mb or (6.0 if args.quick else 200.0)
    workers = args.workers or ([2] if args.quick else [1, 2])
    with_ko_train = not (args.no_ko_train or args.quick)
    work = args.work_dir.resolve()
    runs_dir, logs = work / "runs", work / "logs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    config = MinHashConfig()
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                    "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]},
        "minhash": asdict(config),
        "targets": {"throughput_vs_datatrove": ">= 1.0", "recall_at_jaccard_0.85": RECALL_TARGET, "precision": PRECISION_TARGET},
        "definitions": {
            "throughput": "input records (or UTF-8 input bytes) / wall seconds of the whole command, process start to exit",
            "recall": f"planted pairs with true Jaccard >= {RECALL_MIN_JACCARD} where not both documents were kept; "
            "pairs where either document was dropped for another reason are excluded",
            "precision": f"near-duplicate drops whose true Jaccard with the document they were deduplicated against "
            f"(ours: duplicate_of; datatrove: the kept document of the cluster) is >= {PRECISION_MIN_JACCARD}",
            "true_jaccard": "character 5-gram sets of canonical_text(normalize + PII scrub of the text)",
            "peak_rss_tree_mb": "largest sum of RSS over the command's process tree, polled every 0.2 s (psutil)",
            "rusage_children_maxrss_mb": "getrusage(RUSAGE_CHILDREN).ru_maxrss: the largest single descendant, not a sum",
            "other_load_cores": "CPU cores busy with other processes during the run (machine busy time minus ours)",
        },
        "datasets": {},
    }
    started = time.perf_counter()

    print(f"building/reusing the synthetic input ({large_mb:g} MB) in {work}", file=sys.stderr)
    spec = SyntheticSpec(target_mb=large_mb, files=8 if large_mb >= 50 else 4)
    large_dir = build_large_input(work, spec)
    planted = json.loads((large_dir / "planted.json").read_text())
    datasets = [("synthetic", large_dir / "docs", sorted((large_dir / "docs").glob("*.jsonl")), planted, 8)]
    if with_ko_train:
        datasets.insert(0, ("ko-train", KO_TRAIN, sorted(KO_TRAIN.glob("*.txt")), None, 4))

    print("MinHash signatures alone ...", file=sys.stderr)
    results["minhash_signatures"] = minhash_throughput(datasets[-1][2], 20_000 if args.quick else 60_000, config,
                                                       with_datatrove=not args.no_datatrove)

    print("CPU cost of each per-document step ...", file=sys.stderr)
    results["step_costs"] = step_costs(datasets[-1][2][0], 10_000 if args.quick else 30_000, config)

    for name, input_dir, files, truth, num_shards in datasets:
        documents, size = input_size(files)
        entry = {"input": str(input_dir), "files": len(files), "documents": documents, "mb": round(size / MB, 2),
                 "num_shards": num_shards, "ours": {}, "datatrove": {}}
        if truth is not None:
            entry["planted_pairs"] = len(truth)
        results["datasets"][name] = entry
        for count in workers:
            print(f"[{name}] ours, {count} worker(s) ...", file=sys.stderr)
            output = runs_dir / f"ours-{name}-w{count}"
            run = run_ours(input_dir, output, count, num_shards, logs)
            run.update(throughput(run, documents, size))
            run.update(evaluate_ours(output, files, truth))
            entry["ours"][str(count)] = run
            if not args.keep_outputs:
                shutil.rmtree(output, ignore_errors=True)
            if truth is None or args.no_datatrove:
                continue
            print(f"[{name}] datatrove, {count} worker(s) ...", file=sys.stderr)
            output = runs_dir / f"datatrove-{name}-w{count}"
            run = run_datatrove(input_dir, output, count, config, logs)
            run.update(throughput(run, documents, size))
            run.update(evaluate_datatrove(output, files, truth))
            entry["datatrove"][str(count)] = run
            ours = entry["ours"][str(count)]
            ours["throughput_vs_datatrove"] = round(run["seconds"] / ours["seconds"], 3)
            ours["cpu_efficiency_vs_datatrove"] = round(run["cpu_seconds"] / ours["cpu_seconds"], 3)
            if not args.keep_outputs:
                shutil.rmtree(output, ignore_errors=True)
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, args.out)
    print_table(results)
    print(f"\nwrote {args.out}")
    return 0


def scale(args: argparse.Namespace) -> int:
    """Our pipeline at growing input sizes: throughput, peak RSS and its slope, near-dup quality."""
    workers = (args.workers or [2])[0]
    work = args.work_dir.resolve()
    out = args.out if args.out != RESULTS / "corpus.json" else RESULTS / "corpus-scale.json"
    (work / "runs").mkdir(parents=True, exist_ok=True)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    results = {"machine": {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                           "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]},
               "workers": workers, "num_shards": 8, "sizes": []}
    for gigabytes in args.scale_gb:
        print(f"[{gigabytes:g} GB] building/reusing the synthetic input ...", file=sys.stderr)
        folder = build_large_input(work, SyntheticSpec(target_mb=gigabytes * 1000, files=8))
        files = sorted((folder / "docs").glob("*.jsonl"))
        documents, size = input_size(files)
        print(f"[{gigabytes:g} GB] ours, {workers} worker(s), {documents:,} documents ...", file=sys.stderr)
        output = work / "runs" / f"ours-scale-{gigabytes:g}gb-w{workers}"
        run = run_ours(folder / "docs", output, workers, 8, work / "logs")
        run.update(throughput(run, documents, size))
        run.update(evaluate_ours(output, files, json.loads((folder / "planted.json").read_text())))
        results["sizes"].append({"target_gb": gigabytes, "documents": documents, "mb": round(size / MB, 1), **run})
        if not args.keep_outputs:
            shutil.rmtree(output, ignore_errors=True)
        if args.delete_inputs and gigabytes >= 1:
            shutil.rmtree(folder, ignore_errors=True)
        _write_json(out, results)
    sizes = results["sizes"]
    if len(sizes) >= 2:
        x = np.array([entry["mb"] / 1000 for entry in sizes])
        y = np.array([entry["peak_rss_tree_mb"] / 1000 for entry in sizes])
        slope, intercept = np.polyfit(x, y, 1)
        results["rss_slope_gb_per_input_gb"] = round(float(slope), 3)
        results["rss_intercept_gb"] = round(float(intercept), 3)
    results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    _write_json(out, results)
    header = (f"{'input GB':>8} {'docs':>10} {'sec':>7} {'docs/s':>7} {'MB/s':>5} {'MB/cpu-s':>8} {'peak RSS GB':>11} "
              f"{'recall':>6} {'prec':>6} {'other':>5}")
    print("\n" + header + "\n" + "-" * len(header))
    for entry in sizes:
        print(f"{entry['mb'] / 1000:>8.2f} {entry['documents']:>10,} {entry['seconds']:>7.1f} {entry['docs_per_s']:>7,.0f} "
              f"{entry['mb_per_s']:>5.2f} {entry['mb_per_cpu_s']:>8.2f} {entry['peak_rss_tree_mb'] / 1000:>11.2f} "
              f"{entry['recall']['recall']!s:>6} {entry['precision']['precision']!s:>6} {entry['other_load_cores']:>5.2f}")
    if "rss_slope_gb_per_input_gb" in results:
        print(f"peak RSS ≈ {results['rss_intercept_gb']:.2f} GB + {results['rss_slope_gb_per_input_gb']:.3f} × input GB "
              f"(least squares over {len(sizes)} sizes); {workers} workers, 8 shards, process tree polled every 0.2 s")
    print(f"\nwrote {out}")
    return 0


def _write_json(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def print_table(results: dict) -> None:
    sig = results["minhash_signatures"]
    print(f"\nMinHash signatures alone ({sig['num_perm']} permutations, 1 process): {sig['docs_per_s']:,.0f} docs/s, "
          f"{sig['mb_per_s']:.2f} MB/s, {sig['mb_per_cpu_s']:.2f} MB per CPU-second", end="")
    if "datatrove" in sig:
        print(f" (datatrove's signature on the same texts: {sig['datatrove']['mb_per_cpu_s']:.2f} MB per CPU-second)", end="")
    print()
    costs = results["step_costs"]
    print(f"CPU seconds per input MB of each per-document step (1 process, {costs['mb']} MB of the synthetic input): "
          + ", ".join(f"{name} {value:.3f}" for name, value in costs["cpu_seconds_per_mb"].items())
          + f"; sum {costs['sum_cpu_seconds_per_mb']:.3f} (the pipeline's total is 1 / MB/cpu-s below)")
    header = (f"{'input':<10} {'system':<9} {'w':>1} {'docs':>8} {'MB':>6} {'sec':>6} {'docs/s':>7} {'MB/s':>5} "
              f"{'MB/cpu-s':>8} {'vs dt':>5} {'cpu vs':>6} {'RSS MB':>6} {'recall':>6} {'prec':>6} {'other':>5}")
    print("\n" + header + "\n" + "-" * len(header))
    for name, entry in results["datasets"].items():
        for system in ("ours", "datatrove"):
            for count, run in entry[system].items():
                recall = run.get("recall", {}).get("recall")
                precision = run["precision"]["precision"]
                ratio, cpu_ratio = run.get("throughput_vs_datatrove", ""), run.get("cpu_efficiency_vs_datatrove", "")
                print(f"{name:<10} {system:<9} {count:>1} {entry['documents']:>8,} {entry['mb']:>6.1f} {run['seconds']:>6.1f} "
                      f"{run['docs_per_s']:>7,.0f} {run['mb_per_s']:>5.2f} {run['mb_per_cpu_s']:>8.2f} {ratio:>5} {cpu_ratio:>6} "
                      f"{run['peak_rss_tree_mb']:>6,.0f} {recall if recall is not None else '-':>6} "
                      f"{precision if precision is not None else '-':>6} {run['other_load_cores']:>5.2f}")
    print("ours = normalize + PII + quality filters + exact dedup + MinHash near dedup (verified) + zstd-10 shards;\n"
          "datatrove = MinHash near dedup only (signature, buckets, cluster, filter; no candidate verification; zstd output)")
    print(f"vs dt = our docs/s over datatrove's (target >= 1); cpu vs = the same per CPU-second; recall: planted pairs with "
          f"true Jaccard >= {RECALL_MIN_JACCARD} found (target >= {RECALL_TARGET});\nprec = near-dup drops with true "
          f"Jaccard >= {PRECISION_MIN_JACCARD} (target >= {PRECISION_TARGET}); RSS = peak sum over the process tree; "
          f"other = CPU cores busy with other jobs meanwhile (load avg {results['machine']['loadavg_at_start'][0]} at start, "
          f"{results['machine']['loadavg_at_end'][0]} at end)")


if __name__ == "__main__":
    sys.exit(main())
