"""Where the corpus job's per-document CPU goes: CPU seconds per input MB of each pure step.

    python -m benchmarks.corpus_profile                   # 20 MB sample, this tree vs the baseline commit
    python -m benchmarks.corpus_profile --mb 50 --repeat 3
    python -m benchmarks.corpus_profile --cprofile        # also cProfile the cleaning of the sample

The sample: documents of 5-20 random ko-train lines (seeded, as `benchmarks/corpus_synthetic.py` builds its
synthetic input, without planted near duplicates), `--mb` MB of UTF-8 JSONL. Each step runs over all
of it in this one process, timed with `time.process_time` (CPU, not wall: the machine is shared):

    normalize        corpus.normalize.normalize_text
    scrub_pii        corpus.pii.scrub_pii on the normalized texts
    quality filters  corpus.filters.quality_drop_reason on the scrubbed texts (all rules)
    top_ngram_chars  the repetition rule alone (character 3-grams), on every scrubbed text
    minhash          corpus.minhash.MinHasher.signatures in batches of 2,000
    sha256 key       corpus.clean.text_key (exact-dedup key)
    doc_line JSON    corpus.spill.doc_line (the line each kept document is written as)
    shard zstd-10    corpus.shards.encode_shard (JSON + zstd level 10)

Old and new side by side: the same steps from `--baseline` (a git commit; default: the commit before
the speed work) are loaded from git into this process (`git show REV:corpus/X.py`), run on the same
texts alternately with this tree's, and their outputs are compared (the script fails on any
difference). Each figure is the minimum over `--repeat` rounds. Table on stdout, JSON in
`benchmarks/results/corpus-profile.json`.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import json
import pstats
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

import numpy as np

from corpus import filters, minhash, normalize, pii
from corpus.clean import text_key
from corpus.shards import encode_shard
from corpus.spill import doc_line

KO_TRAIN = REPO.parent / "shared" / "data" / "ko-train"
RESULTS = REPO / "benchmarks" / "results"
BASELINE = "377cd2f"  # the corpus job before the hot-path work (issue 22, item 1)
MB = 1_000_000


def ko_train_lines() -> list[str]:
    lines = []
    for path in sorted(KO_TRAIN.glob("*.txt")):
        lines.extend(line for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if not lines:
        raise SystemExit(f"{KO_TRAIN}: no .txt files (the shared ko-train data is missing)")
    return lines


def build_sample(megabytes: float, seed: int) -> list[dict]:
    rng = random.Random(seed)
    lines = ko_train_lines()
    records, total = [], 0
    while total < megabytes * MB:
        text = "\n".join(rng.choice(lines) for _ in range(rng.randint(5, 20)))
        record = {"id": f"doc-{len(records):08d}", "text": text, "source": "ko-train-sample"}
        records.append(record)
        total += len(json.dumps(record, ensure_ascii=False).encode("utf-8")) + 1
    return records


def load_baseline(rev: str, name: str):
    """`corpus/NAME.py` as it was at `rev`, as a module of its own (these import only stdlib/numpy)."""
    source = subprocess.run(["git", "show", f"{rev}:corpus/{name}.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader(f"baseline_{name}", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    exec(compile(source, f"{rev}:corpus/{name}.py", "exec"), module.__dict__)
    return module


def steps_of(mods, records):
    """(name, function of the previous steps' results) for one implementation."""
    normalize_text, scrub_pii = mods["normalize"].normalize_text, mods["pii"].scrub_pii
    quality = mods["filters"].QualityConfig()
    hasher = mods["minhash"].MinHasher(mods["minhash"].MinHashConfig())
    top_ngram_chars, quality_drop_reason = mods["filters"].top_ngram_chars, mods["filters"].quality_drop_reason
    return [
        ("normalize", lambda s: [normalize_text(r["text"]) for r in records]),
        ("scrub_pii", lambda s: [scrub_pii(text) for text in s["normalize"]]),
        ("quality filters", lambda s: [quality_drop_reason(text, quality) for text, _ in s["scrub_pii"]]),
        ("top_ngram_chars", lambda s: [top_ngram_chars(text, quality.top_ngram_size) for text, _ in s["scrub_pii"]]),
        ("minhash", lambda s: np.concatenate([hasher.signatures([t for t, _ in s["scrub_pii"][i : i + 2000]])
                                              for i in range(0, len(records), 2000)])),
        ("sha256 key", lambda s: [text_key(text) for text, _ in s["scrub_pii"]]),
        ("doc_line JSON", lambda s: [doc_line({**r, "text": t}) for r, (t, _) in zip(records, s["scrub_pii"])]),
        ("shard zstd-10", lambda s: encode_shard([{**r, "text": t} for r, (t, _) in zip(records, s["scrub_pii"])], 10)),
    ]


def same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and bool((a == b).all())
    return a == b


def measure(records: list[dict], baseline: dict, repeat: int) -> dict:
    size = sum(len(json.dumps(r, ensure_ascii=False).encode("utf-8")) + 1 for r in records) / MB
    current = {name: module for name, module in
               (("normalize", normalize), ("pii", pii), ("filters", filters), ("minhash", minhash))}
    runs = {"before": steps_of(baseline, records), "after": steps_of(current, records)}
    best = {label: {} for label in runs}
    for _ in range(repeat):
        results = {label: {} for label in runs}
        for index in range(len(runs["after"])):
            for label in ("before", "after"):  # alternately: load on the machine hits both alike
                name, function = runs[label][index]
                started = time.process_time()
                results[label][name] = function(results[label])
                seconds = time.process_time() - started
                best[label][name] = min(best[label].get(name, seconds), seconds)
            if not same(results["before"][name], results["after"][name]):
                raise SystemExit(f"{name}: the output differs from the baseline's")
    table = {name: {"before": round(best["before"][name] / size, 4), "after": round(best["after"][name] / size, 4),
                    "speedup": round(best["before"][name] / best["after"][name], 2) if best["after"][name] else None}
             for name in best["after"]}
    per_doc = [name for name in table if name != "top_ngram_chars"]  # a part of "quality filters"
    totals = {label: round(sum(table[name][label] for name in per_doc), 4) for label in ("before", "after")}
    totals["speedup"] = round(totals["before"] / totals["after"], 2)
    return {"documents": len(records), "mb": round(size, 2), "repeat": repeat,
            "cpu_seconds_per_mb": table, "sum_cpu_seconds_per_mb": totals}


def profile_cleaning(records: list[dict], top: int) -> str:
    from corpus.clean import clean_document

    quality = filters.QualityConfig()
    hasher = minhash.MinHasher(minhash.MinHashConfig())
    profiler = cProfile.Profile()
    profiler.enable()
    cleaned = [clean_document(record, quality)[0] for record in records]
    for i in range(0, len(cleaned), 2000):
        hasher.signatures([doc["text"] for doc in cleaned[i : i + 2000]])
    [doc_line(doc) for doc in cleaned]
    profiler.disable()
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(top)
    return stream.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.corpus_profile", description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=20.0, help="sample size in MB of JSONL (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--repeat", type=int, default=2, help="rounds; each figure is the minimum (default: %(default)s)")
    parser.add_argument("--baseline", default=BASELINE, help="git commit to compare with (default: %(default)s)")
    parser.add_argument("--cprofile", action="store_true", help="also print cProfile's top functions of the cleaning")
    parser.add_argument("--out", type=Path, default=RESULTS / "corpus-profile.json")
    args = parser.parse_args(argv)

    records = build_sample(args.mb, args.seed)
    baseline = {name: load_baseline(args.baseline, name) for name in ("normalize", "pii", "filters", "minhash")}
    result = {"baseline": args.baseline,
              "head": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                     text=True).stdout.strip(),
              **measure(records, baseline, args.repeat)}
    print(f"{result['documents']:,} documents, {result['mb']} MB; CPU seconds per MB, min of {args.repeat} "
          f"(before = {args.baseline}, after = this tree; outputs identical)")
    print(f"{'step':18s} {'before':>8s} {'after':>8s} {'speedup':>8s}")
    for name, row in result["cpu_seconds_per_mb"].items():
        label = f"  ({name})" if name == "top_ngram_chars" else name
        print(f"{label:18s} {row['before']:8.4f} {row['after']:8.4f} {row['speedup']:7.2f}x")
    totals = result["sum_cpu_seconds_per_mb"]
    print(f"{'sum':18s} {totals['before']:8.4f} {totals['after']:8.4f} {totals['speedup']:7.2f}x")
    if args.cprofile:
        report = profile_cleaning(records, 25)
        result["cprofile_top"] = report
        print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
