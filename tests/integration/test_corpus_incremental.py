"""Corpora that grow: `--dedup-against PREVIOUS_OUTPUT` reads the earlier output's index/, never its text."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.support.corpus_runs import folder_bytes, ko_lines, read_shards, run_corpus, write_lines


@pytest.fixture(scope="module")
def first_output(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("incremental")
    source = write_lines(base / "run1" / "ko" / "news_comments.txt", ko_lines("news_comments.txt", 4000))
    output = base / "out1"
    assert run_corpus("--input", source, "--output", output, "--num-shards", 2, "--direct_num_workers=2") == 0
    return output


@pytest.mark.slow
def test_every_output_keeps_an_index_of_what_it_holds(first_output):
    manifest = json.loads((first_output / "manifest.json").read_text())
    assert [entry["file"] for entry in manifest["index"]] == [f"index/part-0000{i}-of-00002.parquet" for i in range(2)]
    rows = [row for entry in manifest["index"] for row in pq.read_table(first_output / entry["file"]).to_pylist()]
    kept = read_shards(first_output)
    assert sorted(row["id"] for row in rows) == sorted(doc["id"] for doc in kept)
    assert all(len(row["bands"]) == 20 and len(row["signature"]) == 800 and len(row["text_sha256"]) == 64 for row in rows)


@pytest.mark.slow
def test_second_run_drops_exact_and_near_duplicates_of_the_first(first_output, tmp_path):
    before = folder_bytes(first_output)
    kept_first = read_shards(first_output)
    long_texts = [doc for doc in kept_first if len(doc["text"]) >= 60]
    near_sources, exact_sources = long_texts[:100], long_texts[100:200]
    assert len(exact_sources) == 100
    planted = [doc["text"] + " 진짜로" for doc in near_sources] + [doc["text"] for doc in exact_sources]
    folder = tmp_path / "run2" / "ko"
    write_lines(folder / "chatbot_qa.txt", ko_lines("chatbot_qa.txt", 3000))
    write_lines(folder / "nsmc_raw_reviews.txt", ko_lines("nsmc_raw_reviews.txt", 3000))
    write_lines(folder / "planted.txt", planted)
    output = tmp_path / "out2"
    assert run_corpus("--input", folder, "--output", output, "--num-shards", 2, "--dedup-against", first_output,
                      "--direct_num_workers=2") == 0

    assert folder_bytes(first_output) == before  # the earlier output is untouched
    kept_second = read_shards(output)
    assert not {doc["text"] for doc in kept_second} & {doc["text"] for doc in kept_first}
    dropped = {record["id"]: record for record in read_shards(output, "rejected") if "id" in record}
    planted_ids = [f"ko:planted.txt:{line:08d}" for line in range(1, 201)]
    near = [dropped.get(doc_id) for doc_id in planted_ids[:100]]
    found = [(record, source) for record, source in zip(near, near_sources)
             if record and record["reason"] == "near_duplicate_of_previous" and record["duplicate_of"] == source["id"]]
    assert len(found) >= 95
    for doc_id, source in zip(planted_ids[100:], exact_sources):
        assert dropped[doc_id]["reason"] == "exact_duplicate_of_previous" and dropped[doc_id]["duplicate_of"] == source["id"]
    for out in (first_output, output):
        stats = json.loads((out / "stats.json").read_text())
        assert stats["conservation"]["holds"]
    stats = json.loads((output / "stats.json").read_text())
    assert stats["input_records"] == 6200 and stats["dropped"]["exact_duplicate_of_previous"] >= 100
    assert json.loads((output / "manifest.json").read_text())["dedup_against"] == [str(first_output)]


def test_dedup_against_a_folder_without_index_is_one_line(tmp_path, capsys):
    source = write_lines(tmp_path / "a.txt", ko_lines("chatbot_qa.txt", 20))
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "manifest.json").write_text(json.dumps({"shards": []}))
    assert run_corpus("--input", source, "--output", tmp_path / "out", "--dedup-against", tmp_path / "old") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lists no index/" in err[0]
    assert not (tmp_path / "out").exists()
