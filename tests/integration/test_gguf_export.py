"""`kocpt export gguf`: llama.cpp's own converter, then llama.cpp itself (llama-cpp-python) against SentencePiece
and the Hugging Face model. The model: a tiny Llama with Llama-2's real tokenizer merged with Korean pieces,
shaped like the demo's export. llama-cpp-python is built from source once (minutes) into a cache folder;
pip's wheel cache (or PIP_FIND_LINKS) makes later builds fast."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from serving.gguf_export import LLAMA_CPP_PYTHON, cache_dir, main
from stagekit.paths import EN_HELDOUT, KO_HELDOUT, KO_TRAIN, LLAMA2_TOKENIZER
from tests.support.llama_cpp import ensure_llama_cpp
from tests.support.models import write_exported_model
from tokenizer import merge as merge_cmd
from tokenizer import train as train_cmd


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gguf")
    prefix = root / "ko"
    assert train_cmd.main(["--input", str(KO_TRAIN), "--vocab-size", "4000", "--output", str(prefix)]) == 0
    assert merge_cmd.main(["--base", str(LLAMA2_TOKENIZER.parent), "--add", f"{prefix}.model", "--output",
                           str(root / "tokenizer"), "--eval-code-files", "0", "--eval-max-lines", "20", "--no-plot"]) == 0
    return write_exported_model(root / "final", root / "tokenizer")


def fails(argv, capsys, needle) -> None:
    assert main(argv, prog="kocpt export gguf") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err, err


def test_refuses_models_it_cannot_export_faithfully(exported, tmp_path, capsys):
    padded = tmp_path / "padded"
    shutil.copytree(exported, padded)
    config = json.loads((padded / "config.json").read_text())
    (padded / "config.json").write_text(json.dumps({**config, "vocab_size": config["vocab_size"] + 64}))
    fails(["--model", str(padded), "--output", str(tmp_path / "p.gguf")], capsys, "[PAD] tokens")
    (padded / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    fails(["--model", str(padded), "--output", str(tmp_path / "p.gguf")], capsys, "model_type 'gpt2'")
    fails(["--model", str(tmp_path / "none"), "--output", str(tmp_path / "p.gguf")], capsys, "no config.json")
    fails(["--model", str(exported), "--output", str(tmp_path / "p.gguf"), "--llama-cpp", str(tmp_path)], capsys,
          "no convert_hf_to_gguf.py")
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*tmp"))


@pytest.mark.network
@pytest.mark.slow
def test_gguf_in_llama_cpp_matches_sentencepiece_and_the_hf_model(exported, tmp_path, capsys):
    ensure_llama_cpp()
    from serving.gguf_check import TOLERANCE, check_gguf
    from tokenizer import check as tokenizer_check

    figures = {}
    for outtype in ("f32", "f16", "q8_0"):
        out = tmp_path / f"model-{outtype}.gguf"
        code = main(["--model", str(exported), "--output", str(out), "--outtype", outtype,
                     "--texts", str(KO_HELDOUT), "--texts", str(EN_HELDOUT)], prog="kocpt export gguf")
        stdout, err = capsys.readouterr()
        assert code == 0, stdout + err
        assert "defects: none" in stdout and oct(out.stat().st_mode & 0o777) != "0o600"
        report = check_gguf(out, exported, [str(KO_HELDOUT), str(EN_HELDOUT)])
        assert report["ids"]["disagreements"] == [] and report["ids"]["encodings"] > 1000
        assert len(set(report["vocab"].values())) == 1
        assert report["log_probs"]["file_type"] == outtype
        assert report["log_probs"]["max_abs_diff"] <= TOLERANCE[outtype]
        assert all(p["same_argmax"] for p in report["log_probs"]["prompts"]) or outtype != "f32"
        figures[outtype] = report["log_probs"]["max_abs_diff"]
    print(f"llama.cpp vs HF max |log p diff|: {figures}")
    assert figures["f32"] <= figures["q8_0"]
    # The llama.cpp column of `kocpt tokenizer check` agrees too.
    code = tokenizer_check.main([str(exported), "--gguf", str(tmp_path / "model-f32.gguf")])
    stdout = capsys.readouterr().out
    assert code == 0 and "llama_cpp == sentencepiece" in stdout, stdout
    assert (cache_dir() / f"llama.cpp-{LLAMA_CPP_PYTHON}" / "convert_hf_to_gguf.py").is_file()
