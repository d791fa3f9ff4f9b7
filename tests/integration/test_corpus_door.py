"""What the corpus job accepts and refuses at the door: real Beam runs on real ko-train lines."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard

from pipelines.corpus import build_parser
from pipelines.runner import UsageError, split_arguments
from stagekit.paths import KO_TRAIN, REPO
from tests.support.corpus_runs import folder_bytes, ko_lines, read_shards, run_corpus, write_lines


# --- arguments --------------------------------------------------------------------------------
def test_beam_options_pass_and_anything_else_is_refused():
    parser = build_parser("kocpt corpus")
    beam = ["--runner", "DataflowRunner", "--project", "p", "--region", "europe-west4", "--temp_location", "gs://b/tmp",
            "--max_num_workers=8", "--flink_master", "localhost:8081", "--spark_master_url", "spark://h:7077",
            "--direct_num_workers=2"]
    args, beam_args = split_arguments(parser, ["--input", "a.txt", "b.txt", "--input", "c.txt", "--output", "o", *beam])
    assert args.input == ["a.txt", "b.txt", "c.txt"] and beam_args == beam
    for unknown, named in ((["--no-near-dedupe"], "--no-near-dedupe"), (["stray.txt"], "stray.txt"),
                           (["--runner", "DataflowRunner", "--projcet", "p"], "--projcet")):
        with pytest.raises(UsageError, match=named):
            split_arguments(parser, ["--input", "a.txt", "--output", "o", *unknown])


@pytest.mark.parametrize("extra", [["--no-near-dedupe"], ["stray.txt"]])
def test_unknown_option_or_stray_path_stops_before_anything_starts(extra, tmp_path, capsys):
    source = write_lines(tmp_path / "in" / "a.txt", ko_lines("chatbot_qa.txt", 20))
    assert run_corpus("--input", source, "--output", tmp_path / "out", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and extra[0] in err[0] and "error:" in err[0]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in"]


def test_output_whose_parent_cannot_be_created_is_one_line(tmp_path, capsys):
    source = write_lines(tmp_path / "a.txt", ko_lines("chatbot_qa.txt", 20))
    (tmp_path / "file").write_text("not a folder")
    assert run_corpus("--input", source, "--output", tmp_path / "file" / "sub" / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot create its parent folder" in err[0]


@pytest.mark.slow
def test_several_paths_after_one_input_and_a_repeated_flag_are_all_read(tmp_path):
    files = [write_lines(tmp_path / "in" / f"{name}", ko_lines(name, 300)) for name in
             ("chatbot_qa.txt", "nsmc_raw_reviews.txt", "news_comments.txt")]
    output = tmp_path / "missing" / "parent" / "out"  # its parent folders are created
    # Dataflow options reach Beam untouched (the local runner ignores them).
    assert run_corpus("--input", files[0], files[1], "--input", files[2], "--output", output, "--num-shards", 1,
                      "--project", "p", "--region", "europe-west4", "--temp_location", tmp_path / "gcs-tmp",
                      "--direct_num_workers=2") == 0
    stats = json.loads((output / "stats.json").read_text())
    manifest = json.loads((output / "manifest.json").read_text())
    assert stats["input_records"] == 900 and stats["conservation"]["holds"]
    assert sorted(entry["path"] for entry in manifest["inputs"]) == sorted(map(str, files))
    assert manifest["skipped_files"] == [] and set(manifest["encodings"].values()) == {"utf-8"}


# --- directories, compression, encodings ------------------------------------------------------
@pytest.fixture(scope="module")
def chatbot_utf8(tmp_path_factory) -> tuple[Path, Path]:
    """3,000 ko-train chat lines (all CP949-encodable) and the UTF-8 run's output."""
    base = tmp_path_factory.mktemp("encodings")
    source = write_lines(base / "utf8" / "ko" / "chatbot_qa.txt", ko_lines("chatbot_qa.txt", 3000))
    output = base / "out-utf8"
    assert run_corpus("--input", source, "--output", output, "--num-shards", 2, "--direct_num_workers=2") == 0
    return source, output


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ["cp949", "auto"])
def test_cp949_copy_keeps_exactly_the_texts_of_the_utf8_run(encoding, chatbot_utf8, tmp_path):
    source, utf8_output = chatbot_utf8
    # The same folder and file name as the UTF-8 copy, so ids match too and shards can be compared bytewise.
    copy = write_lines(tmp_path / encoding / "ko" / "chatbot_qa.txt", source.read_text(encoding="utf-8").splitlines(),
                       encoding="cp949")
    output = tmp_path / "out"
    assert run_corpus("--input", copy, "--output", output, "--num-shards", 2, "--encoding", encoding,
                      "--direct_num_workers=2") == 0
    assert folder_bytes(output) == folder_bytes(utf8_output)
    assert json.loads((output / "manifest.json").read_text())["encodings"] == {str(copy): "cp949"}
    assert len(read_shards(output)) == json.loads((utf8_output / "stats.json").read_text())["kept"] > 1000


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, chatbot_utf8) -> tuple[Path, dict[str, int]]:
    """A folder tree with a CP949 file, a BOM .jsonl, every compression, and a file of another type."""
    folder = tmp_path_factory.mktemp("mixed") / "inputs"
    source, _ = chatbot_utf8
    write_lines(folder / "chatbot_cp949.txt", source.read_text(encoding="utf-8").splitlines()[:500], encoding="cp949")
    reviews = ko_lines("nsmc_raw_reviews.txt", 600)
    jsonl = "".join(json.dumps({"text": line}, ensure_ascii=False) + "\n" for line in reviews[:100]).encode()
    (folder / "a" / "b").mkdir(parents=True)
    (folder / "a" / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + jsonl)
    (folder / "a" / "b" / "reviews.jsonl.bz2").write_bytes(bz2.compress(jsonl))
    (folder / "a" / "b" / "reviews.jsonl.xz").write_bytes(lzma.compress(jsonl))
    text = ("\n".join(reviews[100:]) + "\n").encode()
    (folder / "a" / "reviews.txt.gz").write_bytes(gzip.compress(text))
    (folder / "a" / "b" / "reviews.txt.bz2").write_bytes(bz2.compress(text))
    (folder / "a" / "b" / "reviews.txt.zst").write_bytes(zstandard.ZstdCompressor().compress(text))
    (folder / "a" / "b" / "labels.tsv").write_text("id\tlabel\n1\t0\n", encoding="utf-8")
    records = {"chatbot_cp949.txt": 500, "bom.jsonl": 100, "reviews.jsonl.bz2": 100, "reviews.jsonl.xz": 100,
               "reviews.txt.gz": 500, "reviews.txt.bz2": 500, "reviews.txt.zst": 500}
    return folder, records


@pytest.mark.slow
def test_folder_is_read_recursively_and_other_files_and_encodings_are_named(mixed_folder, tmp_path, capsys):
    folder, records = mixed_folder
    output = tmp_path / "out"
    assert run_corpus("--input", folder, "--output", output, "--num-shards", 1, "--direct_num_workers=2") == 0
    err = capsys.readouterr().err
    stats = json.loads((output / "stats.json").read_text())
    manifest = json.loads((output / "manifest.json").read_text())
    # Every supported file is read, whatever its compression and depth.
    assert stats["input_records"] == sum(records.values())
    assert sorted(Path(path).name for path in manifest["encodings"]) == sorted(records)
    # The file of another type is named in one warning line and in the manifest.
    tsv = str(folder / "a" / "b" / "labels.tsv")
    warnings = [line for line in err.splitlines() if "warning: skipping" in line]
    assert len(warnings) == 1 and tsv in warnings[0]
    assert manifest["skipped_files"] == [tsv]
    # The BOM .jsonl loses no record: its first line is a document, not invalid_json.
    assert "invalid_json" not in stats["rejected"]
    docs = read_shards(output)
    rejects = read_shards(output, "rejected")
    bom = [r for r in docs + rejects if r.get("id", "").startswith("a:bom.jsonl:") or r.get("file") == "bom.jsonl"]
    assert len(bom) == 100 and any(r.get("id") == "a:bom.jsonl:00000001" for r in bom)
    # The CP949 file: rejected line by line as UTF-8, and the summary says which encoding reads it.
    cp949 = str(folder / "chatbot_cp949.txt")
    assert stats["rejected"]["invalid_utf8"] >= 450
    [problem] = stats["undecodable_files"]
    assert problem["file"] == cp949 and problem["suggested_encoding"] == "cp949" and problem["share"] > 0.9
    hint = [line for line in err.splitlines() if cp949 in line and "do not decode" in line]
    assert len(hint) == 1 and "--encoding cp949" in hint[0] and "% of 500 lines" in hint[0]


# --- interrupted runs -------------------------------------------------------------------------
@pytest.mark.slow
def test_kill_9_mid_run_then_rerun_gives_identical_output_and_no_stale_folder(tmp_path):
    inputs = [KO_TRAIN / "chatbot_qa.txt"]
    command = [sys.executable, "-m", "pipelines.corpus", "--input", *map(str, inputs), "--num-shards", "3",
               "--direct_num_workers=2"]
    clean = subprocess.run([*command, "--output", str(tmp_path / "clean")], cwd=REPO, capture_output=True, text=True,
                           timeout=600)
    assert clean.returncode == 0, clean.stderr[-2000:]

    output = tmp_path / "out"
    job = subprocess.Popen([*command, "--output", str(output)], cwd=REPO, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staging_seen = None
    while job.poll() is None:
        staging = list(tmp_path.glob("out.tmp-*/"))
        if staging and staging_seen is None:
            staging_seen = time.time()
        # Kill once shards are being written, or two seconds into the job, whichever comes first.
        if staging and (list(staging[0].glob("shards/*")) or time.time() - staging_seen > 2):
            os.killpg(job.pid, signal.SIGKILL)  # the job and its worker processes, as kill -9 on the group
            break
        time.sleep(0.02)
    assert job.wait(timeout=60) == -signal.SIGKILL, "the job finished before it could be killed"
    stale = [path for path in tmp_path.glob("out.tmp-*") if path.is_dir()]
    assert len(stale) == 1 and not output.exists()
    assert not (stale[0] / "manifest.json").exists()  # never a complete-looking folder

    rerun = subprocess.run([*command, "--output", str(output)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"removed 1 temporary folder(s) of an earlier interrupted run: {stale[0]}" in rerun.stderr
    assert not [path for path in tmp_path.glob("out.tmp-*") if path.is_dir()]
    assert folder_bytes(output) == folder_bytes(tmp_path / "clean")
    assert (output / "manifest.json").read_text() == (tmp_path / "clean" / "manifest.json").read_text()
