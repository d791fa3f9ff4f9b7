"""`kocpt export gguf` for SmolLM2-135M with Korean merges (byte-level BPE): llama.cpp's converter must still
declare SmolLM2's pre-tokenizer ("smollm"), and llama.cpp's ids must equal Hugging Face's."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from hashlib import sha256
from pathlib import Path

import pytest

from checkpoints import resize as resize_cmd
from checkpoints.smollm2 import smollm2_hf_dir
from serving.gguf_export import converter, gguf_vocabulary, main
from stagekit.paths import EN_HELDOUT, KO_HELDOUT, KO_TRAIN
from tests.support.llama_cpp import ensure_llama_cpp
from tokenizer import merge as merge_cmd
from tokenizer import train as train_cmd

CODE = ["def f(x):\n    return {'a': [1, 2.5e-3]}  # comment", "for (int i = 0; i < n; ++i) { s += a[i]; }",
        "  \t\n\n   indented", "emoji 🦙🚀 ✅ 👍🏽", "GPU 메모리는 80GB이고 batch_size=32 입니다"]


def chktxt() -> str:
    """llama.cpp's pre-tokenizer checksum text, read from the pinned converter."""
    source = (converter(None)[0].parent / "conversion" / "base.py").read_text(encoding="utf-8")
    return eval(re.search(r"\n\s+chktxt = ('.*')\n", source).group(1))  # a plain string literal


def gguf_pre(path: Path) -> str:
    sys.path.insert(0, str(converter(None)[1]))
    try:
        from gguf import GGUFReader
    finally:
        sys.path.pop(0)
    field = GGUFReader(str(path)).fields["tokenizer.ggml.pre"]
    return bytes(field.parts[field.data[0]]).decode()


@pytest.fixture(scope="module")
def expanded(tmp_path_factory) -> Path:
    root, smol = tmp_path_factory.mktemp("gguf-bpe"), smollm2_hf_dir()
    assert train_cmd.main(["--input", str(KO_TRAIN), "--vocab-size", "3000", "--output", str(root / "ko"),
                           "--base", str(smol), "--sample-size", "20000"]) == 0
    assert merge_cmd.main(["--base", str(smol), "--add", str(root / "ko.json"), "--output", str(root / "tok"),
                           "--eval-code-files", "0", "--eval-max-lines", "50", "--no-plot"]) == 0
    assert resize_cmd.main(["--model", str(smol), "--tokenizer", str(root / "tok"), "--output", str(root / "model")]) == 0
    return root / "model"


def hf_ids(model: Path, lines: list[str]) -> list[list[int]]:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)(lines, add_special_tokens=False)["input_ids"]


@pytest.mark.network
@pytest.mark.slow
def test_expanded_smollm2_exports_with_smollm_pre_tokenizer_and_hf_ids(expanded, tmp_path, capsys):
    from transformers import AutoTokenizer

    ensure_llama_cpp()
    # Safe Korean merges need Hangul; the checksum text has none, so the checksum is SmolLM2's.
    base, ours = AutoTokenizer.from_pretrained(smollm2_hf_dir()), AutoTokenizer.from_pretrained(expanded)
    assert len(ours) > len(base) and ours.encode(chktxt()) == base.encode(chktxt())
    out = tmp_path / "smol-ko.gguf"
    code = main(["--model", str(expanded), "--output", str(out), "--outtype", "f32", "--texts", str(KO_HELDOUT),
                 "--texts", str(EN_HELDOUT)], prog="kocpt export gguf")
    stdout, err = capsys.readouterr()
    assert code == 0 and "defects: none" in stdout, stdout + err
    assert gguf_pre(out) == "smollm" and "declared as" not in stdout
    assert gguf_vocabulary(out, converter(None)[1]) == [ours.convert_ids_to_tokens(i) for i in range(len(ours))]
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(out), vocab_only=True, verbose=False)
    lines = CODE + [chktxt()]
    assert [list(llm.tokenize(s.encode(), add_bos=False, special=False)) for s in lines] == hf_ids(expanded, lines)


@pytest.mark.network
@pytest.mark.slow
def test_merges_that_change_the_checksum_still_declare_the_base_pre_tokenizer(expanded, tmp_path, capsys):
    """A merge on non-Hangul text (here put in by hand) changes the checksum; the converter alone then refuses,
    the export declares SmolLM2's pre-tokenizer, and llama.cpp still gives Hugging Face's ids."""
    from tokenizers import Tokenizer

    ensure_llama_cpp()
    model = tmp_path / "model"
    shutil.copytree(expanded, model)
    spec = json.loads((model / "tokenizer.json").read_text())
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    # A pair of adjacent tokens in one pre-token of the checksum text whose merge the base lacks.
    words = [w for w, _ in tokenizer.pre_tokenizer.pre_tokenize_str(chktxt())]
    pair = next((a.value, b.value) for w in words if not re.search(r"\d", w)
                for a, b in zip(tokenizer.model.tokenize(w), tokenizer.model.tokenize(w)[1:])
                if a.value + b.value not in spec["model"]["vocab"])
    last = max(spec["model"]["vocab"], key=spec["model"]["vocab"].get)
    spec["model"]["vocab"][pair[0] + pair[1]] = spec["model"]["vocab"].pop(last)
    spec["model"]["merges"] = [m for m in spec["model"]["merges"] if "".join(m if isinstance(m, list) else m.split(" ")) != last]
    spec["model"]["merges"].append([*pair] if isinstance(spec["model"]["merges"][0], list) else " ".join(pair))
    (model / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False))
    assert hf_ids(model, [chktxt()]) != hf_ids(expanded, [chktxt()])
    script, gguf_py = converter(None)
    refused = subprocess.run([sys.executable, str(script), str(model), "--outfile", str(tmp_path / "x.gguf"), "--vocab-only"],
                             capture_output=True, text=True, env={"PYTHONPATH": str(gguf_py), "PATH": "/usr/bin:/bin"})
    assert refused.returncode != 0 and "BPE pre-tokenizer was not recognized" in refused.stderr
    out = tmp_path / "changed.gguf"
    assert main(["--model", str(model), "--output", str(out), "--outtype", "q8_0", "--no-check"],
                prog="kocpt export gguf") == 0
    assert "declared as smollm" in capsys.readouterr().out and gguf_pre(out) == "smollm"
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(out), vocab_only=True, verbose=False)
    lines = CODE + [chktxt()]
    assert [list(llm.tokenize(s.encode(), add_bos=False, special=False)) for s in lines] == hf_ids(model, lines)
    assert sha256(str(hf_ids(model, [chktxt()])).encode()).hexdigest() != sha256(str(hf_ids(expanded, [chktxt()])).encode()).hexdigest()
