"""pipelines/tokenize_corpus.py: shards -> Megatron indexed datasets, read back through GPTDataset."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import sentencepiece as spm
import zstandard

from stagekit.paths import LLAMA2_TOKENIZER, REPO
from tests.support.pretrain import korean_lines, tokenized_corpus, write_shards


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory):
    return tokenized_corpus(tmp_path_factory)


def expected_documents(texts: list[str]) -> list[list[int]]:
    processor = spm.SentencePieceProcessor(model_file=str(LLAMA2_TOKENIZER))
    return [[processor.bos_id(), *processor.encode(text), processor.eos_id()] for text in texts]


@pytest.mark.slow
def test_every_document_round_trips_through_the_indexed_dataset(tokenized):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    out, shards = tokenized
    manifest = json.loads((out / "manifest.json").read_text())
    assert [d["prefix"] for d in manifest["datasets"]] == [f"part-0000{i}-of-00002" for i in range(2)]
    assert manifest["tokenizer"]["vocab_size"] == 32000
    total = 0
    for entry, docs in zip(manifest["datasets"], shards):
        dataset = IndexedDataset(str(out / entry["prefix"]))
        assert dataset.index.dtype == np.uint16  # 32,000 ids fit
        expected = expected_documents([d["text"] for d in docs])
        assert len(dataset) == len(expected) == entry["documents"]
        for index, ids in enumerate(expected):
            assert dataset[index].tolist() == ids
        assert entry["tokens"] == sum(map(len, expected))
        total += entry["tokens"]
    assert manifest["tokens"] == total


@pytest.mark.slow
def test_gpt_dataset_samples_are_the_documents_in_its_order(tokenized):
    """GPTDataset packs documents into seq+1 token samples; undoing its shuffle gives them back."""
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    from megatron.core.datasets.utils import Split

    from pretrain.data import _DatasetTokenizer

    out, shards = tokenized
    prefix = str(out / "part-00000-of-00002")
    indexed = IndexedDataset(prefix)
    seq = 32
    config = GPTDatasetConfig(
        random_seed=7, sequence_length=seq, blend=([prefix], None), split="100,0,0",
        path_to_cache=str(out / "cache"), tokenizer=_DatasetTokenizer(2),
        reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False, create_attention_mask=False,
    )
    dataset = GPTDataset(indexed, prefix, np.arange(len(indexed), dtype=np.int32), None, Split.train, config)
    order = np.argsort(dataset.shuffle_index)  # sample position j -> dataset index
    stream = []
    for j, idx in enumerate(order):
        sample = dataset[int(idx)]
        text = sample["tokens"].tolist() + [sample["labels"][-1].item()]
        stream.extend(text if j == 0 else text[1:])  # consecutive samples share one token
    expected_docs = expected_documents([d["text"] for d in shards[0]])
    packed = [t for doc in dataset.document_index for t in expected_docs[doc]]
    assert len(stream) == len(dataset) * seq + 1
    assert stream == packed[: len(stream)]
    assert sample["tokens"].shape == (seq,)


def record_in_manifest(corpus, shard) -> None:
    """Make the corpus manifest describe `shard` as it is now (size and sha256)."""
    from corpus.shards import shard_entry

    manifest = json.loads((corpus / "manifest.json").read_text())
    data = shard.read_bytes()
    manifest["shards"] = [
        shard_entry(entry["file"], entry["documents"], data) if entry["file"].endswith(shard.name) else entry
        for entry in manifest["shards"]
    ]
    (corpus / "manifest.json").write_text(json.dumps(manifest))


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.tokenize_corpus", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.slow
def test_missing_corpus_is_one_line(tmp_path):
    result = run_cli(tmp_path / "nope", tmp_path / "out", "--tokenizer", LLAMA2_TOKENIZER.parent)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("nope: no such file or directory")
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_bad_tokenizer_is_one_line(tmp_path):
    write_shards(tmp_path / "corpus", korean_lines(10), 1)
    bogus = tmp_path / "tok"
    bogus.mkdir()
    (bogus / "tokenizer.model").write_bytes(b"not a model")
    result = run_cli(tmp_path / "corpus", tmp_path / "out", "--tokenizer", bogus)
    assert result.returncode == 2
    assert "not a SentencePiece model" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_corrupt_shard_is_one_line_and_writes_no_manifest(tmp_path):
    write_shards(tmp_path / "corpus", korean_lines(20), 2)
    broken = tmp_path / "corpus" / "shards" / "part-00001-of-00002.jsonl.zst"
    broken.write_bytes(zstandard.ZstdCompressor().compress(b'{"id": "x", "text": "ok"}\n{broken\n'))
    record_in_manifest(tmp_path / "corpus", broken)  # a shard written broken, not changed afterwards
    result = run_cli(tmp_path / "corpus", tmp_path / "out", "--tokenizer", LLAMA2_TOKENIZER, "--direct_num_workers=1")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "part-00001-of-00002.jsonl.zst: unreadable shard" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "out" / "manifest.json").exists()


# --- the door: one verified corpus in, one output out, nothing half-written ----------------------
def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if "error:" in line]


def snapshot(folder) -> dict:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.slow
def test_corpus_without_manifest_or_with_a_missing_shard_is_refused(tmp_path):
    write_shards(tmp_path / "corpus", korean_lines(10), 2)
    (tmp_path / "corpus" / "shards" / "part-00001-of-00002.jsonl.zst").unlink()
    result = run_cli("--input", tmp_path / "corpus", "--output", tmp_path / "out", "--tokenizer", LLAMA2_TOKENIZER)
    assert result.returncode == 2
    assert len(error_lines(result)) == 1 and "part-00001-of-00002.jsonl.zst: shard named in manifest.json is missing" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
    (tmp_path / "corpus" / "manifest.json").unlink()
    result = run_cli(tmp_path / "corpus", tmp_path / "out", "--tokenizer", LLAMA2_TOKENIZER)
    assert result.returncode == 2 and "no manifest.json" in result.stderr and len(error_lines(result)) == 1


@pytest.mark.slow
def test_changed_shard_is_refused(tmp_path):
    write_shards(tmp_path / "corpus", korean_lines(10), 2)
    shard = tmp_path / "corpus" / "shards" / "part-00000-of-00002.jsonl.zst"
    shard.write_bytes(zstandard.ZstdCompressor().compress(b'{"id": "x", "text": "\xec\x95\x88\xeb\x85\x95"}\n'))
    result = run_cli(tmp_path / "corpus", tmp_path / "out", "--tokenizer", LLAMA2_TOKENIZER)
    assert result.returncode == 2
    assert len(error_lines(result)) == 1 and "part-00000-of-00002.jsonl.zst: shard changed since the corpus was written" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_two_corpora_or_a_stray_path_or_option_are_refused(tmp_path):
    write_shards(tmp_path / "a", korean_lines(10), 1)
    write_shards(tmp_path / "b", korean_lines(10, skip=10), 1)
    before = snapshot(tmp_path / "b")
    result = run_cli(tmp_path / "a", tmp_path / "b", "--tokenizer", LLAMA2_TOKENIZER)
    assert result.returncode == 2 and len(error_lines(result)) == 1 and "is a corpus, not an output folder" in result.stderr
    assert snapshot(tmp_path / "b") == before
    for extra in ([tmp_path / "c"], ["--no-bso"]):
        result = run_cli(tmp_path / "a", tmp_path / "out", *extra, "--tokenizer", LLAMA2_TOKENIZER)
        assert result.returncode == 2 and len(error_lines(result)) == 1, result.stderr
        assert str(extra[0]) in error_lines(result)[0] and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_failed_rerun_leaves_a_good_output_exactly_as_it_was(tmp_path):
    write_shards(tmp_path / "corpus", korean_lines(40), 2)
    good = run_cli("--input", tmp_path / "corpus", "--output", tmp_path / "nested" / "out", "--tokenizer", LLAMA2_TOKENIZER,
                   "--direct_num_workers=1")
    assert good.returncode == 0, good.stderr[-2000:]
    before = snapshot(tmp_path / "nested" / "out")
    assert json.loads(before["manifest.json"])["documents"] == 40
    broken = tmp_path / "corpus" / "shards" / "part-00001-of-00002.jsonl.zst"
    broken.write_bytes(zstandard.ZstdCompressor().compress(b'{"id": "x", "text": "ok"}\n{broken\n'))
    record_in_manifest(tmp_path / "corpus", broken)
    result = run_cli("--input", tmp_path / "corpus", "--output", tmp_path / "nested" / "out", "--tokenizer", LLAMA2_TOKENIZER,
                     "--direct_num_workers=1")
    assert result.returncode == 2
    assert len(error_lines(result)) == 1 and "unreadable shard" in error_lines(result)[0]
    assert "Traceback" not in result.stderr
    assert snapshot(tmp_path / "nested" / "out") == before
    assert sorted(path.name for path in (tmp_path / "nested").iterdir()) == ["out"]


@pytest.mark.slow
def test_the_tokenize_section_and_set_reach_the_job_and_flags_win(tmp_path):
    """--config's tokenize: section, then --set tokenize.KEY=VALUE, then the flags (--no-bos)."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    write_shards(tmp_path / "corpus", korean_lines(6), 1)
    config = tmp_path / "run.yaml"
    config.write_text("tokenize: {add_bos: false, append_eod: false, batch_size: 2}\n")
    processor = spm.SentencePieceProcessor(model_file=str(LLAMA2_TOKENIZER))
    cases = {  # output -> (extra args, (every document starts with BOS, every document ends with EOD))
        "file": ([], (False, False)),
        "set": (["--set", "tokenize.append_eod=true"], (False, True)),
        "flag": (["--set", "tokenize.add_bos=true", "--set", "tokenize.append_eod=true", "--no-bos"], (False, True)),
        "set-both": (["--set", "tokenize.add_bos=true", "--set", "tokenize.append_eod=true"], (True, True)),
    }
    for name, (extra, expected) in cases.items():
        result = run_cli(tmp_path / "corpus", tmp_path / name, "--tokenizer", LLAMA2_TOKENIZER, "--config", config,
                         *extra, "--direct_num_workers=1")
        assert result.returncode == 0, result.stderr[-2000:]
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        assert manifest["documents"] == 6
        documents = [list(document) for entry in manifest["datasets"]
                     for document in IndexedDataset(str(tmp_path / name / entry["prefix"]))]
        starts = {document[0] == processor.bos_id() for document in documents}
        ends = {document[-1] == processor.eos_id() for document in documents}
        assert (starts, ends) == ({expected[0]}, {expected[1]}), name
