"""Bad pretraining configs fail with one clear line, before any process group (in-process, fast)."""

from __future__ import annotations

import json

import pytest

from pretrain import train
from pretrain.config import ConfigError, load_config
from stagekit.paths import LLAMA2_TOKENIZER
from tests.support.pretrain import tiny_config, tokenized_corpus


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tokenized_corpus(tmp_path_factory)[0]


def error_line(capsys, config, *sets, world_size: int | None = None, monkeypatch=None) -> str:
    if world_size is not None:
        monkeypatch.setenv("WORLD_SIZE", str(world_size))
    assert train.main([str(config), *[f"--set={s}" for s in sets]], prog="kocpt pretrain") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("kocpt pretrain: error: ")
    return lines[0]


def test_good_config_plans_with_derived_sizes(tmp_path, data_dir, capsys, monkeypatch):
    config = tiny_config(tmp_path / "c.yaml", data_dir, tmp_path / "run")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert train.main([str(config), "--check", "--set=parallel.tensor=2"]) == 0
    out = capsys.readouterr().out
    assert "world_size=4 tensor=2 pipeline=1 data=2 micro_batches_per_step=1" in out
    assert "vocab 32000 (padded 32000)" in out
    assert not (tmp_path / "run").exists()  # planning writes nothing


def test_tensor_parallel_must_divide_heads(tmp_path, data_dir, capsys, monkeypatch):
    config = tiny_config(tmp_path / "c.yaml", data_dir, tmp_path / "run")
    line = error_line(capsys, config, "parallel.tensor=3", world_size=3, monkeypatch=monkeypatch)
    assert "parallel.tensor=3 does not divide the 4 attention heads" in line


def test_global_batch_must_divide(tmp_path, data_dir, capsys, monkeypatch):
    config = tiny_config(tmp_path / "c.yaml", data_dir, tmp_path / "run", global_batch_size=6)
    line = error_line(capsys, config, world_size=2, monkeypatch=monkeypatch)
    assert "global_batch_size=6 is not divisible by micro_batch_size × data_parallel = 2 × 2" in line


def test_missing_data_path(tmp_path, capsys):
    config = tiny_config(tmp_path / "c.yaml", tmp_path / "no-such-data", tmp_path / "run")
    line = error_line(capsys, config)
    assert "pretrain.data.blend.0.path" in line and "no-such-data.bin not found" in line


def hf_config_only(hf, vocab_size: int):
    """An HF model directory as far as planning reads it: its config.json."""
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({
        "model_type": "llama", "vocab_size": vocab_size, "hidden_size": 64, "intermediate_size": 172,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
    }))
    return hf


def test_vocabulary_mismatch_between_tokenizer_and_checkpoint(tmp_path, data_dir, capsys):
    hf = hf_config_only(tmp_path / "hf", vocab_size=40192)
    config = tiny_config(tmp_path / "c.yaml", data_dir, tmp_path / "run", init={"hf": str(hf)})
    line = error_line(capsys, config)
    assert "vocabulary mismatch" in line and "32000 pieces" in line and "40192 rows" in line


def test_checkpoint_dir_may_not_be_an_input(tmp_path, data_dir, capsys):
    line = error_line(capsys, tiny_config(tmp_path / "c.yaml", data_dir, data_dir))
    assert "pretrain.checkpoint.dir" in line and "pretrain.data" in line


def test_an_init_model_made_with_another_tokenizer_is_refused(tmp_path, data_dir, capsys):
    """Same number of rows is not enough: the init model's own tokenizer must have the same pieces."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    hf = hf_config_only(tmp_path / "hf", vocab_size=32000)
    proto = pb.ModelProto()
    proto.ParseFromString(LLAMA2_TOKENIZER.read_bytes())
    proto.pieces[700].piece = "▁다른"
    (hf / "tokenizer.model").write_bytes(proto.SerializeToString())
    line = error_line(capsys, tiny_config(tmp_path / "c.yaml", data_dir, tmp_path / "run", init={"hf": str(hf)}))
    assert "pretrain.tokenizer" in line and "its id 700" in line


def test_data_from_another_tokenizer(tmp_path, data_dir, capsys):
    other = tmp_path / "other"
    other.mkdir()
    for path in data_dir.iterdir():
        if path.is_file():
            (other / path.name).write_bytes(path.read_bytes())
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["tokenizer"]["sha256"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    line = error_line(capsys, tiny_config(tmp_path / "c.yaml", other, tmp_path / "run"))
    assert "was tokenized with a different tokenizer" in line


@pytest.mark.parametrize(
    "sets, message",
    [
        (["optimizer.lr=fast"], "pretrain.optimizer.lr: expected a number"),
        (["nonsense=1"], "pretrain: unknown key(s) nonsense"),
        (["precision=fp8"], "pretrain.precision: auto, bf16 or fp32"),
        (["init=hf"], "pretrain.init: expected random"),
        (["train_tokens=1e6"], "set train_steps or train_tokens, not both"),
        (["optimizer.warmup_steps=5"], "warmup_steps 5 must be < its 5 steps"),
        (["tokenizer=/nonexistent"], "pretrain.tokenizer: /nonexistent: no such tokenizer"),
        (["seq_length=1024"], "seq_length 1024 > max_position_embeddings 256"),
    ],
)
def test_bad_values(tmp_path, data_dir, capsys, sets, message):
    config = tiny_config(tmp_path / "c.yaml", data_dir, tmp_path / "run")
    assert message in error_line(capsys, config, *sets)


def test_overrides_are_typed(tmp_path, data_dir):
    config = tiny_config(tmp_path / "c.yaml", data_dir, tmp_path / "run")
    run = load_config(config, ["optimizer.lr=2e-4", "parallel.tensor=2", "data.blend.0.weight=3"])
    assert run.pretrain.optimizer.lr == 2e-4 and run.pretrain.parallel.tensor == 2
    assert run.pretrain.data.blend[0].weight == 3.0
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


def test_demo_config_is_valid():
    from stagekit.paths import REPO

    run = load_config(REPO / "configs" / "demo.yaml")
    assert run.pretrain.parallel.tensor == 2
    assert [s.name for s in run.pretrain.stages] == ["new-embeddings", "full"]
    assert str(LLAMA2_TOKENIZER)  # the tests use the real tokenizer


def test_check_types_every_section_of_the_file(tmp_path, data_dir, capsys):
    """launch.sh runs --check before any process starts: a typo in a section another stage reads (eval:)
    is found there, not after the training."""
    import yaml

    config = tiny_config(tmp_path / "c.yaml", data_dir, tmp_path / "run")
    document = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**document, "eval": {"taskz": ["nsmc"]}}))
    assert train.main([str(config), "--check"], prog="kocpt pretrain") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "eval: unknown key(s) taskz (eval.taskz)" in lines[0], lines


def test_base_vocab_size_is_read_from_the_model_kocpt_resized(tmp_path, data_dir, capsys):
    """The rows a new-rows-only stage freezes come from resize_report.json, not from a number typed by hand."""
    hf = hf_config_only(tmp_path / "hf", vocab_size=32000)
    (hf / "resize_report.json").write_text(json.dumps({"old_vocab_size": 31000, "base_vocab_size": 30500}))
    config = tiny_config(tmp_path / "c.yaml", data_dir, tmp_path / "run", init={"hf": str(hf)})
    assert train.main([str(config), "--check", "--set=model.base_vocab_size=null"]) == 0
    assert "base_vocab_size=30500" in capsys.readouterr().out
    line = error_line(capsys, config)  # the config's own 31000 disagrees with the model
    assert "model.base_vocab_size 31000" in line and "kept 30500 rows" in line and "resize_report.json" in line


def test_a_new_rows_only_stage_without_base_rows_names_both_ways_to_give_them(tmp_path, data_dir, capsys):
    stages = [{"name": "new-rows", "steps": 3, "trainable": "embeddings", "new_rows_only": True},
              {"name": "all", "steps": 2}]
    config = tiny_config(tmp_path / "c.yaml", data_dir, tmp_path / "run", stages=stages)
    line = error_line(capsys, config, "model.base_vocab_size=null")
    assert "pretrain.stages.0.new_rows_only" in line and "resize_report.json" in line and "model.base_vocab_size" in line
