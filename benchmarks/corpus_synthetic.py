"""The corpus benchmark's large input, built from ko-train: synthetic documents of random ko-train lines
(seeded) in several .jsonl files, plus planted near duplicates whose true Jaccard is recorded."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from benchmarks.measured_run import MB, BenchmarkError
from benchmarks.near_dup_scoring import cleaned, jaccard, shingle_set
from stagekit.paths import KO_TRAIN


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


def input_size(paths: list[Path]) -> tuple[int, int]:
    """(documents, bytes) of the input files: every non-empty line is one record."""
    documents = size = 0
    for path in paths:
        data = path.read_bytes()
        size += len(data)
        documents += sum(1 for line in data.split(b"\n") if line.strip())
    return documents, size

