"""The probes of issue 20, rerun through each stage's own command: every one is refused in one line
(or handled) and nothing the user owns is destroyed. The rule itself is tested in tests/unit/test_outputs.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stagekit.errors import BadInput
from stagekit.outputs import write_marker
from stagekit.paths import LLAMA2_TOKENIZER, REPO


def snapshot(path: Path) -> dict:
    """Every file under `path` (or the file itself) with its bytes: compared before and after a refused run."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def one_line_error(capsys, prog_fragment: str = "") -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert err, "no error printed"
    assert "Traceback" not in "\n".join(err)
    assert "error" in err[-1] and prog_fragment in err[-1]
    return err[-1]


@pytest.fixture
def raw_dir(tmp_path) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.txt").write_text("서울은 대한민국의 수도이며 가장 큰 도시이다. 한강이 도시를 가로지른다.\n", encoding="utf-8")
    return raw


# --------------------------------------------------------------------------------------- corpus

def corpus(argv: list[str]) -> int:
    from pipelines.corpus import main

    return main(argv, prog="kocpt corpus")


def test_corpus_output_equal_to_its_input_is_refused_and_the_input_kept(raw_dir, capsys):
    before = snapshot(raw_dir)
    assert corpus(["--input", str(raw_dir), "--output", str(raw_dir), "--overwrite"]) == 2
    assert "is --input" in one_line_error(capsys) and snapshot(raw_dir) == before


def test_corpus_overwrite_never_deletes_a_data_file(raw_dir, tmp_path, capsys):
    data = tmp_path / "b.txt"
    data.write_text("someone's data\n")
    assert corpus(["--input", str(raw_dir / "a.txt"), "--output", str(data), "--overwrite"]) == 2
    assert "not an output of kocpt corpus" in one_line_error(capsys) and data.read_text() == "someone's data\n"


@pytest.mark.parametrize("spelling", ["dot-slash", "symlink", "dot-dot"])
def test_corpus_dedup_against_its_own_output_is_refused_however_spelled(raw_dir, tmp_path, monkeypatch, capsys, spelling):
    monkeypatch.chdir(tmp_path)
    c10 = tmp_path / "c10"
    c10.mkdir()
    write_marker(c10, "corpus")
    (c10 / "manifest.json").write_text("{}")
    (tmp_path / "link").symlink_to(c10)
    (tmp_path / "sub").mkdir()
    dedup = {"dot-slash": "./c10", "symlink": "link", "dot-dot": "sub/../c10"}[spelling]
    before = snapshot(c10)
    assert corpus(["--input", str(raw_dir), "--dedup-against", dedup, "--output", "c10", "--overwrite"]) == 2
    assert "--dedup-against" in one_line_error(capsys) and snapshot(c10) == before


def test_corpus_output_inside_its_input_is_refused(raw_dir, capsys):
    assert corpus(["--input", str(raw_dir), "--output", str(raw_dir / "clean")]) == 2
    assert "lies inside --input" in one_line_error(capsys) and not (raw_dir / "clean").exists()


@pytest.mark.slow
def test_kocpt_outputs_under_an_input_folder_are_skipped_and_named(raw_dir, tmp_path, capsys):
    """A corpus written into its input folder by an earlier run (or an old kocpt) is not raw input."""
    from corpus.shards import iter_documents

    first = tmp_path / "first"
    assert corpus(["--input", str(raw_dir), "--output", str(first), "--direct_num_workers=1"]) == 0
    shutil.copytree(first, raw_dir / "c1")  # an earlier output, with its marker
    shutil.copytree(first, raw_dir / "old" / "c0")  # as an older kocpt wrote it: no marker
    (raw_dir / "old" / "c0" / ".kocpt-output.json").unlink()
    shutil.copytree(first, raw_dir / "c2.tmp-1a2b3c4d")  # a killed run's staging folder
    capsys.readouterr()
    out = tmp_path / "second"
    assert corpus(["--input", str(raw_dir), "--output", str(out), "--direct_num_workers=1"]) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if "kocpt output" in line]
    manifest = json.loads((out / "manifest.json").read_text())
    folders = [f"{raw_dir / name}/" for name in ("c1", "c2.tmp-1a2b3c4d", "old/c0")]
    assert sorted(path for path in manifest["skipped_files"] if path.endswith("/")) == folders
    assert len(warning) == 1 and all(folder in warning[0] for folder in folders)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["input_records"] == 1
    assert [d["text"] for d in iter_documents(out)] == [d["text"] for d in iter_documents(first)]


def test_a_set_for_another_stages_section_is_refused(raw_dir, tmp_path, capsys):
    from kocpt.cli import main as kocpt

    for command in (["corpus", "--input", str(raw_dir)], ["tokenize", str(raw_dir), "--tokenizer", "t"],
                    ["checkpoints", "resize", "--model", "m", "--tokenizer", "t"], ["export", "gguf", "--model", "m"]):
        assert kocpt([*command, "--output", str(tmp_path / "o"), "--set", "tokenizer.vocab_sise=1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "does not read the tokenizer section" in err[0], err
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------- tokenizer merge

def test_merge_onto_its_base_directory_is_refused_and_the_base_kept(tmp_path, capsys):
    from tokenizer.merge import main

    base = tmp_path / "llama2"
    base.mkdir()
    shutil.copy(LLAMA2_TOKENIZER, base / "tokenizer.model")
    before = snapshot(base)
    assert main(["--base", str(base), "--add", str(LLAMA2_TOKENIZER), "--output", str(base), "--overwrite"],
                prog="merge") == 2
    assert "is --base" in one_line_error(capsys) and snapshot(base) == before
    assert main(["--base", str(base / "tokenizer.model"), "--add", str(LLAMA2_TOKENIZER), "--output", str(base),
                 "--overwrite"], prog="merge") == 2
    assert "contains --base" in one_line_error(capsys) and snapshot(base) == before


def test_tokenizer_train_never_writes_over_an_input(tmp_path, capsys):
    from tokenizer.train import main

    texts = tmp_path / "ko.json"
    texts.write_text('{"text": "안녕하세요"}\n')
    with pytest.raises(BadInput, match="is --input"):
        from tokenizer.train import TrainConfig

        TrainConfig(inputs=[str(texts)], output=str(tmp_path / "ko")).validate()
    assert main(["--input", str(tmp_path), "--output", str(tmp_path / "ko")], prog="train") == 2
    assert "lies inside --input" in one_line_error(capsys)


# ------------------------------------------------------------------------------ checkpoints resize

def test_resize_onto_its_model_is_refused_and_the_model_kept(tmp_path, capsys):
    from checkpoints.resize import main

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 32000}))
    (model / "model.safetensors").write_bytes(b"weights")
    tokenizer = tmp_path / "tok"
    tokenizer.mkdir()
    before = snapshot(model)
    assert main(["--model", str(model), "--tokenizer", str(tokenizer), "--output", str(model), "--overwrite"]) == 2
    assert "is --model" in one_line_error(capsys) and snapshot(model) == before
    assert main(["--model", str(model), "--tokenizer", str(tokenizer), "--output", str(tokenizer), "--overwrite"]) == 2
    assert "is --tokenizer" in one_line_error(capsys)


def test_resize_overwrite_replaces_only_its_own_output(tmp_path, capsys):
    from checkpoints.resize import main

    foreign = tmp_path / "downloaded-model"
    foreign.mkdir()
    (foreign / "config.json").write_text("{}")
    assert main(["--model", str(tmp_path / "m"), "--tokenizer", str(tmp_path / "t"), "--output", str(foreign),
                 "--overwrite"]) == 2
    assert "not an output of kocpt checkpoints resize" in one_line_error(capsys)
    assert (foreign / "config.json").read_text() == "{}"


# ---------------------------------------------------------------------------------- export gguf

def test_gguf_overwrite_onto_a_directory_is_one_line(tmp_path):
    from serving.gguf_export import export

    (tmp_path / "model").mkdir()
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep").write_text("x")
    with pytest.raises(BadInput, match="not an output of kocpt export gguf"):
        export(tmp_path / "model", target, overwrite=True)
    (tmp_path / "empty").mkdir()  # a file output never lands on a folder, even an empty one
    with pytest.raises(BadInput, match="already exists"):
        export(tmp_path / "model", tmp_path / "empty")
    with pytest.raises(BadInput, match="is --model"):
        export(tmp_path / "model", tmp_path / "model", overwrite=True)
    assert (target / "keep").read_text() == "x"


# ------------------------------------------------------------------------------------ tokenize

def byte_level_tokenizer(directory: Path, size: int, bos: str | None) -> Path:
    """A byte-level BPE tokenizer.json of `size` ids with Qwen's properties when `bos` is None:
    an EOS token and no BOS token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    # GPT-2's byte alphabet from tokenizers itself: importing transformers here would bind its log
    # handler to this test's captured stderr, which later tests would then write to after it closed.
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate(alphabet)}
    for i in range(len(vocab), size - 2):
        vocab[f"filler{i}"] = i
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(["<|endoftext|>", "<|im_start|>"])
    directory.mkdir(parents=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {"eos_token": "<|endoftext|>", **({"bos_token": bos} if bos else {})}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


@pytest.mark.parametrize("size", [1_000, 70_000])
def test_tokenize_refuses_a_tokenizer_without_the_bos_it_is_asked_for(tmp_path, capsys, size):
    from corpus.shards import write_texts_as_corpus
    from pipelines.tokenize_corpus import main

    write_texts_as_corpus(tmp_path / "corpus", ["안녕하세요", "hello"], 1)
    tokenizer = byte_level_tokenizer(tmp_path / "qwen-like", size, bos=None)
    assert main([str(tmp_path / "corpus"), str(tmp_path / "out"), "--tokenizer", str(tokenizer)], prog="tokenize") == 2
    err = one_line_error(capsys)
    assert "no BOS token" in err and "--no-bos" in err and "tokenize.add_bos=false" in err
    assert not (tmp_path / "out").exists()


def test_tokenized_ids_are_checked_to_lie_in_the_vocabulary():
    from corpus.shards import ShardError
    from pipelines.tokenize_corpus import check_ids_in_range

    check_ids_in_range([0, 5, 9], 10, "s")
    for ids in ([-1, 3], [3, 10]):
        with pytest.raises(ShardError, match=r"outside \[0, 10\)"):
            check_ids_in_range(ids, 10, "s")


# ----------------------------------------------------------------------- model vs tokenizer

def test_padding_explains_only_padding_as_it_is_made():
    from tokenizer.model_match import check_rows, padding_explains

    assert padding_explains(32000, 32000) and padding_explains(32128, 32001)  # Megatron: 128
    assert padding_explains(36352, 36268)  # 128 × TP 2 (36,352 = 71 × 512)
    assert not padding_explains(36268, 33547)  # a tokenizer of another base
    with pytest.raises(BadInput, match="no vocabulary padding explains"):
        check_rows(36268, 33547, model="M", tokenizer="T")
    with pytest.raises(BadInput, match="only 1,100 rows"):
        check_rows(1100, 32000, model="M", tokenizer="T")
    check_rows(1105, 1100, model="M", tokenizer="T", suppressed=[1100, 1101, 1102, 1103, 1104])  # resize's pad rows


def test_pieces_of_another_tokenizer_are_refused(tmp_path):
    from sentencepiece import sentencepiece_model_pb2 as pb

    from tokenizer.model_match import check_same_pieces

    proto = pb.ModelProto()
    proto.ParseFromString(LLAMA2_TOKENIZER.read_bytes())
    proto.pieces[5000].piece = "▁다른"
    other = tmp_path / "other.model"
    other.write_bytes(proto.SerializeToString())
    check_same_pieces(LLAMA2_TOKENIZER, LLAMA2_TOKENIZER, model="M")
    with pytest.raises(BadInput, match="its id 5000 is '▁다른'"):
        check_same_pieces(other, LLAMA2_TOKENIZER, model="M")


def test_pretrain_checkpoint_dir_may_not_be_an_input(tmp_path):
    from stagekit.outputs import refuse_overlap

    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(BadInput, match="pretrain.checkpoint.dir .* contains pretrain.data"):
        refuse_overlap(tmp_path, {"pretrain.data": [str(data / "part-00000")]}, output_flag="pretrain.checkpoint.dir")


def test_every_stage_command_stages_under_the_one_rule():
    """No stage makes its own temporary output folder: they all go through stagekit.outputs."""
    root = REPO
    offenders = []
    folders = ("checkpoints", "tokenizer", "serving", "pretrain", "evaluation", "kocpt")
    assert all((root / folder / "__init__.py").is_file() for folder in folders)  # the rule reads the real folders
    for folder in folders:
        for path in (root / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if '.tmp-"' in text or "mkdtemp(prefix=" in text or "mkstemp(prefix=f\".{" in text:
                offenders.append(str(path.relative_to(root)))
    assert offenders == []
