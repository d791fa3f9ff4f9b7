"""Corpus-stage benchmark: end-to-end throughput, MinHash speed, memory, near-dup quality, datatrove.

    python -m benchmarks.corpus_bench            # full run (~20 min on 2 cores): ko-train + a >= 200 MB input
    python -m benchmarks.corpus_bench --quick    # smoke run on a small synthetic input (~2 min)
    python -m benchmarks.corpus_bench --scale    # 0.2, 1 and 4 GB synthetic inputs, 2 workers: memory slope

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
import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import psutil

from benchmarks.result_file import write_result
from benchmarks.corpus_step_costs import minhash_throughput, step_costs
from benchmarks.corpus_synthetic import SyntheticSpec, build_large_input, input_size
from benchmarks.datatrove_minhash import evaluate_datatrove, run_datatrove
from benchmarks.measured_run import MB, BenchmarkError, run_measured
from benchmarks.near_dup_scoring import (PRECISION_MIN_JACCARD, PRECISION_TARGET, RECALL_MIN_JACCARD, RECALL_TARGET,
                                         near_dup_precision, planted_recall, read_texts, rejected_records)
from corpus.minhash import MinHashConfig
from stagekit.paths import KO_TRAIN, REPO

RESULTS = REPO / "benchmarks" / "results"


def run_ours(input_dir: Path, output: Path, workers: int, num_shards: int, log_dir: Path) -> dict:
    shutil.rmtree(output, ignore_errors=True)
    command = [sys.executable, "-m", "pipelines.corpus", "--input", str(input_dir), "--output", str(output),
               "--num-shards", str(num_shards), f"--direct_num_workers={workers}"]
    measured = run_measured(command, log_dir / f"{output.name}.log")
    stats = json.loads((output / "stats.json").read_text(encoding="utf-8"))
    return {**measured, "stats": {k: stats[k] for k in ("input_records", "kept", "dropped", "rejected")}}


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.corpus_bench",
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
    return parser


def throughput(run: dict, documents: int, size: int) -> dict:
    return {"docs_per_s": round(documents / run["seconds"], 1), "mb_per_s": round(size / MB / run["seconds"], 3),
            "mb_per_cpu_s": round(size / MB / run["cpu_seconds"], 3)}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
        write_result(out, results)
    sizes = results["sizes"]
    if len(sizes) >= 2:
        x = np.array([entry["mb"] / 1000 for entry in sizes])
        y = np.array([entry["peak_rss_tree_mb"] / 1000 for entry in sizes])
        slope, intercept = np.polyfit(x, y, 1)
        results["rss_slope_gb_per_input_gb"] = round(float(slope), 3)
        results["rss_intercept_gb"] = round(float(intercept), 3)
    results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_result(out, results)
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
