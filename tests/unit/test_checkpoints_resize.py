"""`kocpt checkpoints resize`: the real Llama-2 tokenizer, a merged tokenizer, tiny 32,000-row models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from sentencepiece import sentencepiece_model_pb2 as pb

from checkpoints.config import ResizeSection
from checkpoints.resize import ResizeJob, main, resize
from checkpoints.tiny_llama import tiny_llama_config, write_tiny_llama
from mcore_llama.hf_checkpoint import HFCheckpoint
from stagekit.paths import LLAMA2_TOKENIZER

NEW_PIECES = ["▁안녕", "하세요", "▁한국어", "습니다", "▁서울", "<0xZZ>"]


def write_tokenizer_dir(path: Path, proto) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "tokenizer.model").write_bytes(proto.SerializeToString())
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    return path


def llama2_proto():
    proto = pb.ModelProto()
    proto.ParseFromString(LLAMA2_TOKENIZER.read_bytes())
    return proto


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("resize")
    proto = llama2_proto()
    lowest = min(p.score for p in proto.pieces)
    for k, piece in enumerate(NEW_PIECES):  # appended as the merge does: scores below every base score
        proto.pieces.add(piece=piece, score=lowest - 1 - k, type=pb.ModelProto.SentencePiece.NORMAL)
    merged = write_tokenizer_dir(root / "merged", proto)
    models = {}
    for tied in (False, True):
        config = tiny_llama_config(vocab_size=32000, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=2, tie_word_embeddings=tied)
        model = write_tiny_llama(root / f"model-tied{int(tied)}", config)
        shutil.copy(LLAMA2_TOKENIZER, model / "tokenizer.model")
        models[tied] = model
    return {"root": root, "merged": merged, "models": models}


@pytest.fixture(scope="module")
def resized(work):
    out = {}
    for init in ("fvt", "mean", "random"):
        out[init] = work["root"] / f"resized-{init}"
        resize(ResizeJob(model=work["models"][False], tokenizer=work["merged"], output=out[init],
                         section=ResizeSection(init=init, max_shard_size_mb=1)), progress=False)
    return out


def tensors(path: Path) -> dict[str, torch.Tensor]:
    hf = HFCheckpoint(path)
    return {name: hf.read(name) for name in hf.tensors}


def test_old_rows_and_other_tensors_are_bit_identical(work, resized):
    before = tensors(work["models"][False])
    for path in resized.values():
        after = tensors(path)
        assert len(list(path.glob("model-*-of-*.safetensors"))) > 1  # sharded output
        assert sorted(after) == sorted(before)
        for name, old in before.items():
            if name in ("model.embed_tokens.weight", "lm_head.weight"):
                assert after[name].shape == (32000 + len(NEW_PIECES), old.shape[1])
                assert torch.equal(after[name][:32000], old)
            else:
                assert torch.equal(after[name], old)
        assert json.loads((path / "config.json").read_text())["vocab_size"] == 32000 + len(NEW_PIECES)


def test_logits_on_old_ids_unchanged(work, resized):
    from transformers import LlamaForCausalLM

    tokens = torch.randint(0, 32000, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = LlamaForCausalLM.from_pretrained(work["models"][False]).eval()(tokens).logits
        after = LlamaForCausalLM.from_pretrained(resized["fvt"]).eval()(tokens).logits
    assert after.shape[-1] == 32000 + len(NEW_PIECES)
    assert (after[..., :32000] - before).abs().max() <= 1e-6


def test_fvt_rows_are_means_of_hand_checked_base_pieces(work, resized):
    sp = llama2_proto()
    ids = {p.piece: i for i, p in enumerate(sp.pieces)}
    old, new = tensors(work["models"][False]), tensors(resized["fvt"])
    # Spelled by hand with Llama-2's pieces: 안 is a piece, 녕 (EB 85 95) falls back to bytes;
    # '하세요' continues a word, so no '▁' in front (the dummy prefix must not be added).
    spelled = {
        "▁안녕": ["▁", "안", "<0xEB>", "<0x85>", "<0x95>"],
        "하세요": ["하", "세", "요"],
        "습니다": ["<0xEC>", "<0x8A>", "<0xB5>", "니", "다"],
    }
    for piece, pieces in spelled.items():
        new_id = 32000 + NEW_PIECES.index(piece)
        rows = [ids[p] for p in pieces]
        for name in ("model.embed_tokens.weight", "lm_head.weight"):
            expected = old[name][rows].float().mean(0).to(old[name].dtype)
            assert torch.equal(new[name][new_id], expected), (piece, name)
    # '<0xZZ>' looks like a byte piece but is not one: it is spelled as its characters.
    zz = 32000 + NEW_PIECES.index("<0xZZ>")
    rows = [ids[p] for p in ["<", "0", "x", "Z", "Z", ">"]]
    assert torch.equal(new["model.embed_tokens.weight"][zz], old["model.embed_tokens.weight"][rows].float().mean(0))
    report = json.loads((resized["fvt"] / "resize_report.json").read_text())
    assert report["new_rows"] == len(NEW_PIECES) and report["init"] == "fvt"


def test_mean_and_random_rows(work, resized):
    old = tensors(work["models"][False])["model.embed_tokens.weight"]
    mean_rows = tensors(resized["mean"])["model.embed_tokens.weight"][32000:]
    assert torch.equal(mean_rows, old.float().mean(0).expand_as(mean_rows).to(old.dtype))
    random_rows = tensors(resized["random"])["lm_head.weight"][32000:]
    assert 0.01 < float(random_rows.std()) < 0.04  # the model's own init: N(0, 0.02)
    assert not torch.equal(random_rows[0], random_rows[1])


def test_tied_embeddings_and_pad_to_multiple(work):
    out = work["root"] / "resized-tied"
    resize(ResizeJob(model=work["models"][True], tokenizer=work["merged"], output=out, section=ResizeSection(pad_to_multiple=64)),
           progress=False)
    after = tensors(out)
    assert "lm_head.weight" not in after
    assert after["model.embed_tokens.weight"].shape[0] == 32064
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["suppress_tokens"] == list(range(32000 + len(NEW_PIECES), 32064))
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(out)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert model.config.vocab_size == 32064


def _fail(argv, capsys) -> str:
    assert main(argv, prog="kocpt checkpoints resize") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    return err


def test_bad_inputs_fail_with_one_line(work, tmp_path, capsys):
    model, merged = work["models"][False], work["merged"]
    proto = llama2_proto()
    del proto.pieces[31990:]
    small = write_tokenizer_dir(tmp_path / "small", proto)
    err = _fail(["--model", str(model), "--tokenizer", str(small), "--output", str(tmp_path / "o1")], capsys)
    assert "fewer than the model's vocabulary 32,000" in err

    proto = llama2_proto()
    proto.pieces[5000].piece = "▁바뀐"
    proto.pieces.add(piece="▁한국", score=-1e5)
    other = write_tokenizer_dir(tmp_path / "other", proto)
    err = _fail(["--model", str(model), "--tokenizer", str(other), "--output", str(tmp_path / "o2")], capsys)
    assert "first 32,000 pieces differ" in err and "id 5000" in err

    not_llama = tmp_path / "not-llama"
    shutil.copytree(model, not_llama)
    config = json.loads((not_llama / "config.json").read_text())
    (not_llama / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    err = _fail(["--model", str(not_llama), "--tokenizer", str(merged), "--output", str(tmp_path / "o3")], capsys)
    assert "model_type 'gpt2' is not a family this project handles" in err

    no_base = tmp_path / "no-base"
    shutil.copytree(model, no_base)
    (no_base / "tokenizer.model").unlink()
    err = _fail(["--model", str(no_base), "--tokenizer", str(merged), "--output", str(tmp_path / "o4")], capsys)
    assert "--base-tokenizer" in err
    # ...and with it given explicitly, the same model resizes.
    assert main(["--model", str(no_base), "--tokenizer", str(merged), "--output", str(tmp_path / "o5"),
                 "--base-tokenizer", str(LLAMA2_TOKENIZER.parent)]) == 0

    # Nothing half-written is left behind, and an existing output is not replaced silently.
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 5))
    assert not list(tmp_path.glob(".o*"))
    capsys.readouterr()
    err = _fail(["--model", str(model), "--tokenizer", str(merged), "--output", str(tmp_path / "o5")], capsys)
    assert "already exists" in err


@pytest.mark.parametrize("init", ["fvt", "mean", "random"])
def test_model_rows_must_match_the_base_tokenizer(work, tmp_path, capsys, init):
    # A 1,000-row model with Llama-2's 32,000-piece tokenizer: refused before anything is written
    # (fvt used to die with an IndexError, mean wrote 31,000 made-up rows for real Llama tokens).
    config = tiny_llama_config(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                               num_attention_heads=2)
    model = write_tiny_llama(tmp_path / "model-1000", config)
    shutil.copy(LLAMA2_TOKENIZER, model / "tokenizer.model")
    out = tmp_path / "out"
    capsys.readouterr()  # the model writer's progress bar
    err = _fail(["--model", str(model), "--tokenizer", str(work["merged"]), "--output", str(out), "--init", init], capsys)
    assert "1,000 vocabulary rows" in err and "32,000 pieces" in err, err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_resize_reads_the_checkpoints_section_and_flags_win(work, resized, tmp_path, capsys):
    """`kocpt checkpoints resize --config FILE --set checkpoints.resize.KEY=VALUE`: file < --set < flags."""
    config = tmp_path / "run.yaml"
    config.write_text("checkpoints:\n  resize: {init: random, seed: 1, max_shard_size_mb: 1}\n")
    common = ["--model", str(work["models"][False]), "--tokenizer", str(work["merged"]), "--config", str(config)]
    assert main([*common, "--output", str(tmp_path / "set"), "--set", "checkpoints.resize.init=mean"]) == 0
    assert main([*common, "--output", str(tmp_path / "flag"), "--set", "checkpoints.resize.init=mean",
                 "--init", "fvt"]) == 0
    capsys.readouterr()
    for name, expected in (("set", "mean"), ("flag", "fvt")):
        got, want = tensors(tmp_path / name), tensors(resized[expected])
        assert all(torch.equal(got[key], want[key]) for key in want), name
    config.write_text("checkpoints:\n  resize: {innit: mean}\n")
    assert main([*common, "--output", str(tmp_path / "bad")]) == 2
    assert "checkpoints.resize: unknown key(s) innit" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_a_rerun_removes_and_names_what_a_killed_run_left(work, tmp_path, capsys, dead_pid):
    """A resize killed mid-write leaves `.OUT.tmp-HOST-PID-*` (a full model's size); the next run of the
    same output removes it and says so; `--overwrite` then replaces the finished output."""
    from stagekit.outputs import staging_prefix

    out = tmp_path / "out"
    leftover = tmp_path / (staging_prefix(out).rsplit("-", 2)[0] + f"-{dead_pid}-abc123")
    leftover.mkdir()
    (leftover / "model-00001-of-00002.safetensors").write_bytes(b"\0" * 1024)
    args = ["--model", str(work["models"][False]), "--tokenizer", str(work["merged"]), "--output", str(out)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert not leftover.exists() and f"removed 1 temporary item(s) left by an interrupted run: {leftover}" in err
    assert main([*args, "--overwrite"]) == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
