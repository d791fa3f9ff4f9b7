"""The corpus job as users run it: a real Beam pipeline (FnApiRunner, worker processes)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard

from corpus.shards import shard_of
from pipelines.corpus import main as corpus_main
from stagekit.paths import REPO, SHARED_DATA

pytestmark = pytest.mark.slow
CLEAN_BOT_NOTICE = "클린봇이 부적절한 표현을 감지한 댓글입니다."


def run_corpus(*args: str) -> int:
    return corpus_main([*map(str, args)], prog="kocpt corpus")


def read_plain(path: Path) -> list[dict]:
    """A shard read with nothing but zstandard and json, as any user could."""
    with open(path, "rb") as handle:
        data = zstandard.ZstdDecompressor().stream_reader(handle).read()
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


@pytest.fixture(scope="module")
def ko_train(tmp_path_factory, shared_data) -> Path:
    output = tmp_path_factory.mktemp("ko-train") / "corpus"
    assert run_corpus("--input", shared_data / "ko-train", "--output", output, "--num-shards", 4) == 0
    return output


def test_counts_are_conserved_exactly(ko_train, shared_data):
    stats = json.loads((ko_train / "stats.json").read_text())
    lines = sum(len(path.read_text(encoding="utf-8").splitlines()) for path in (shared_data / "ko-train").glob("*.txt"))
    assert stats["input_records"] == lines == 81_360
    dropped, rejected = sum(stats["dropped"].values()), sum(stats["rejected"].values())
    assert stats["kept"] + dropped + rejected == stats["input_records"]
    assert stats["conservation"]["holds"]
    # ko-train has at least 9,880 exact-duplicate lines (README); more appear after normalization.
    assert stats["dropped"]["exact_duplicate"] >= 5_205 + 465
    assert stats["dropped"]["near_duplicate"] > 0
    rejected_records = sum(len(read_plain(path)) for path in (ko_train / "rejected").glob("*.jsonl.zst"))
    assert rejected_records == dropped + rejected


def test_known_exact_duplicate_survives_once(ko_train):
    docs = [doc for path in sorted((ko_train / "shards").glob("*.zst")) for doc in read_plain(path)]
    notices = [doc for doc in docs if doc["text"] == CLEAN_BOT_NOTICE]
    assert len(notices) == 1
    # The kept copy is the earliest line of the file (smallest id).
    first_line = next(
        number
        for number, line in enumerate((SHARED_DATA / "ko-train" / "news_comments.txt").open(encoding="utf-8"), 1)
        if line.rstrip("\n") == CLEAN_BOT_NOTICE
    )
    assert notices[0]["id"] == f"ko-train:news_comments.txt:{first_line:08d}"
    rejected = [r for path in (ko_train / "rejected").glob("*.zst") for r in read_plain(path)]
    assert sum(r.get("duplicate_of") == notices[0]["id"] for r in rejected) >= 1044
    assert len({doc["id"] for doc in docs}) == len(docs)
    assert len({doc["text"] for doc in docs}) == len(docs)


def test_shards_are_sorted_stable_and_match_the_manifest(ko_train):
    manifest = json.loads((ko_train / "manifest.json").read_text())
    assert [entry["file"] for entry in manifest["shards"]] == [f"shards/part-{i:05d}-of-00004.jsonl.zst" for i in range(4)]
    total = 0
    for index, entry in enumerate(manifest["shards"]):
        path = ko_train / entry["file"]
        data = path.read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["bytes"], entry["sha256"])
        docs = read_plain(path)
        assert len(docs) == entry["documents"]
        ids = [doc["id"] for doc in docs]
        assert ids == sorted(ids)
        assert all(shard_of(doc_id, 4) == index for doc_id in ids)
        assert all(set(doc) == {"id", "text", "source", "meta"} for doc in docs)
        total += len(docs)
    assert total == manifest["documents"] == json.loads((ko_train / "stats.json").read_text())["kept"]


def test_output_holds_only_the_published_files(ko_train):
    """The job's sorted runs (`_spill/`, the documents on disk between shuffles) are never published."""
    assert sorted(path.name for path in ko_train.iterdir()) == [
        ".kocpt-output.json", "index", "manifest.json", "rejected", "shards", "stats.json"]  # the marker: stagekit.outputs
    assert not list(ko_train.parent.glob("*.tmp-*"))


def test_rerun_with_another_worker_count_gives_identical_shards(ko_train, shared_data, tmp_path):
    output = tmp_path / "again"
    assert run_corpus("--input", shared_data / "ko-train", "--output", output, "--num-shards", 4, "--direct_num_workers=1") == 0
    first = json.loads((ko_train / "manifest.json").read_text())
    second = json.loads((output / "manifest.json").read_text())
    assert [e["sha256"] for e in first["shards"]] == [e["sha256"] for e in second["shards"]]
    assert [e["sha256"] for e in first["rejected"]] == [e["sha256"] for e in second["rejected"]]
    assert (ko_train / "stats.json").read_text() == (output / "stats.json").read_text()


def test_near_duplicate_clusters_equal_a_plain_union_find_on_ko_train(ko_train, shared_data):
    """The job's clusters (rounds over workers) against union-find over the same verified pairs,
    recomputed here in memory with the pure functions: read, clean, exact dedup, MinHash, verify."""
    import numpy as np

    from corpus.clean import clean_document, text_key
    from corpus.filters import QualityConfig
    from corpus.minhash import (
        MinHashConfig,
        MinHasher,
        band_hashes,
        candidate_pairs,
        connected_components,
        estimated_jaccard,
    )
    from corpus.records import ReadOptions, read_input

    smallest_by_text: dict[str, dict] = {}
    for path in sorted((shared_data / "ko-train").glob("*.txt")):
        with open(path, "rb") as stream:
            for kind, record in read_input(str(path), stream, ReadOptions()):
                cleaned, reason, _ = clean_document(record, QualityConfig()) if kind == "doc" else (None, "rejected", None)
                if reason is None:
                    key = text_key(cleaned["text"])
                    if key not in smallest_by_text or cleaned["id"] < smallest_by_text[key]["id"]:
                        smallest_by_text[key] = cleaned
    docs = sorted(smallest_by_text.values(), key=lambda doc: doc["id"])
    config = MinHashConfig()
    hasher = MinHasher(config)
    signatures = np.concatenate([hasher.signatures([d["text"] for d in docs[i : i + 2000]]) for i in range(0, len(docs), 2000)])
    ids = [doc["id"] for doc in docs]
    row = {doc_id: index for index, doc_id in enumerate(ids)}
    bands = band_hashes(signatures, config.bands, config.rows)
    candidates = {pair for band in range(config.bands) for pair in candidate_pairs(bands[:, band], ids)}
    verified = [(a, b) for a, b in candidates if estimated_jaccard(signatures[row[a]], signatures[row[b]]) >= config.threshold]
    expected = connected_components(verified)
    rejected = [r for path in (ko_train / "rejected").glob("*.zst") for r in read_plain(path)]
    clustered = {r["id"]: r["duplicate_of"] for r in rejected if r["reason"] == "near_duplicate"}
    assert len(expected) > 50 and clustered == expected


# --- bad input -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad") / "inputs"
    folder.mkdir()
    good = "".join(json.dumps({"text": f"정상적인 한국어 문서 번호 {i}번입니다. 내용이 충분히 깁니다."}, ensure_ascii=False) + "\n" for i in range(3000))
    compressed = zstandard.ZstdCompressor().compress(good.encode())
    (folder / "truncated.jsonl.zst").write_bytes(compressed[: len(compressed) // 2])
    (folder / "bytes.txt").write_bytes("첫 줄은 멀쩡한 한국어 문장입니다\n".encode() + b"\xc3\x28 invalid utf-8\n" + "셋째 줄도 멀쩡한 한국어 문장\n".encode())
    (folder / "lines.jsonl").write_text(
        '{"text": "이 줄은 올바른 제이슨 문서입니다"}\n{"text": "닫히지 않은\n{"text": 5}\n', encoding="utf-8"
    )
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["파케이 파일의 첫 번째 문서입니다", None], "id": ["p1", "p2"]}), folder / "table.parquet")
    datasets.Dataset.from_dict({"text": ["데이터셋 디렉터리의 한국어 문서입니다"]}).save_to_disk(str(folder.parent / "hfdir"))
    return folder


def test_bad_records_and_skipped_bad_files_are_recorded(bad_inputs, tmp_path):
    output = tmp_path / "out"
    code = run_corpus("--input", bad_inputs, "--input", bad_inputs.parent / "hfdir", "--output", output,
                      "--num-shards", 1, "--skip-bad-files", "--direct_num_workers=1")
    assert code == 0
    stats = json.loads((output / "stats.json").read_text())
    assert stats["rejected"] == {
        "bad_file": 1, "invalid_json": 1, "invalid_utf8": 1, "missing_text_field": 1, "text_not_a_string": 1
    }
    rejected = read_plain(output / "rejected" / "part-00000-of-00001.jsonl.zst")
    bad_file = next(r for r in rejected if r["reason"] == "bad_file")
    assert bad_file["file"].endswith("truncated.jsonl.zst") and "truncated" in bad_file["error"]
    assert next(r for r in rejected if r["reason"] == "invalid_utf8")["line"] == 2
    kept = {doc["text"] for doc in read_plain(output / "shards" / "part-00000-of-00001.jsonl.zst")}
    assert {"첫 줄은 멀쩡한 한국어 문장입니다", "이 줄은 올바른 제이슨 문서입니다", "파케이 파일의 첫 번째 문서입니다",
            "데이터셋 디렉터리의 한국어 문서입니다"} <= kept
    assert stats["input_records"] == stats["kept"] + sum(stats["dropped"].values()) + sum(stats["rejected"].values())


def test_corrupt_file_fails_with_one_line_and_leaves_no_output(bad_inputs, tmp_path):
    output = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.corpus", "--input", str(bad_inputs), "--output", str(output), "--direct_num_workers=1"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "truncated.jsonl.zst" in errors[0] and "truncated zstd" in errors[0]
    assert "Traceback" not in result.stderr
    assert not output.exists()
    assert not list(tmp_path.glob("out.tmp-*"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "/nonexistent/file.txt"], "no such file"),
        (["--input", "{repo}/pyproject.toml"], "no supported input files"),
        (["--input", "{repo}/tests/data", "--config", "/nonexistent.yaml"], "config file not found"),
        (["--input", "{repo}/tests/data", "--zstd-level", "99"], "zstd_level"),
    ],
)
def test_usage_errors_are_one_line(args, message, tmp_path, capsys):
    args = [arg.format(repo=REPO) for arg in args]
    assert run_corpus(*args, "--output", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_existing_output_is_never_replaced_without_overwrite(tmp_path, capsys):
    output = tmp_path / "out"
    output.mkdir()
    (output / "keep.txt").write_text("old")
    assert run_corpus("--input", REPO / "tests" / "data", "--output", output) == 2
    assert "already exists" in capsys.readouterr().err
    assert (output / "keep.txt").read_text() == "old"


# --- the demo corpus that ships in the repo, through `kocpt corpus` ---------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict, dict, dict]:
    from stagekit.paths import DEMO_CORPUS

    output = tmp_path_factory.mktemp("demo") / "corpus"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "kocpt"), "corpus", "--input", str(DEMO_CORPUS), "--output", str(output),
         "--config", str(REPO / "configs" / "demo.yaml")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    planted = json.loads((DEMO_CORPUS / "planted.json").read_text())
    kept = {doc["id"]: doc for path in sorted((output / "shards").glob("*.zst")) for doc in read_plain(path)}
    dropped = {r["id"]: r for path in (output / "rejected").glob("*.zst") for r in read_plain(path) if "id" in r}
    return output, planted, kept, dropped


def test_demo_planted_duplicates_are_removed(demo):
    _, planted, kept, dropped = demo
    assert sum(len(v) for v in [kept, dropped]) == planted["documents"]["total"]
    for group in planted["exact_duplicate_groups"]:
        survivors = [doc_id for doc_id in group if doc_id in kept]
        assert survivors == [min(group)], group
        assert all(dropped[doc_id]["reason"] == "exact_duplicate" for doc_id in group if doc_id != min(group))
    pairs = planted["near_duplicate_pairs"]
    resolved = [(a, b) for a, b, _ in pairs if not (a in kept and b in kept)]
    assert len(resolved) >= 0.95 * len(pairs)
    assert all(not (a in kept and b in kept) for a, b, jaccard in pairs if jaccard >= 0.85)
    chain = planted["near_duplicate_chain"]
    assert [doc_id for doc_id in (chain["a"], chain["b"], chain["c"]) if doc_id in kept] == [min(chain["a"], chain["b"], chain["c"])]


def test_demo_pii_low_quality_and_normalization(demo):
    output, planted, kept, dropped = demo
    stats = json.loads((output / "stats.json").read_text())
    assert stats["pii_replaced"] == planted["pii"]
    for doc_id, kinds in planted["pii_documents"].items():
        doc = kept.get(doc_id)
        if doc is not None:  # (a PII document may also be a duplicate)
            assert doc["meta"]["pii"] == kinds
    for doc_id in planted["pii_lookalike_documents"]:
        assert "<" not in kept[doc_id]["text"] and "pii" not in kept[doc_id]["meta"]
    for doc_id in planted["low_quality"]:
        assert doc_id not in kept and dropped[doc_id]["reason"] not in ("exact_duplicate", "near_duplicate")
    import unicodedata

    for doc_id in planted["normalization_cases"]:
        text = kept[doc_id]["text"]
        assert text == unicodedata.normalize("NFC", text)
        assert not any(c in text for c in "\u200b\x07\x08\x1b\x7f\t\u3000\u00a0") and "  " not in text
