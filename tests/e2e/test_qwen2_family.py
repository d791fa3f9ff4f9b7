"""The Qwen2 family end to end: qkv biases, no BOS token, more model rows than tokenizer ids, tied or untied.

No Qwen tokenizer ships in a pinned wheel, so the base tokenizer is a synthetic byte-level BPE with Qwen2's
pre-tokenizer (its Split regex + ByteLevel), its special tokens and no BOS; the model a random Qwen2ForCausalLM
whose embedding has more rows than the tokenizer has ids (Qwen2.5: 151,936 vs 151,665). Path: Korean merges ->
`kocpt checkpoints resize` -> `convert --to megatron` -> logits at TP=2 -> `pretrain` at TP=2 (gloo, --no-bos
data) -> `convert --to hf` -> logits at TP=2 -> GGUF (arch qwen2) whose llama.cpp ids equal Hugging Face's (but on
NFD Hangul: transformers' Qwen2Tokenizer composes it, llama.cpp does not) and whose log-probabilities match.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open

from mcore_llama.families import QWEN2, family_of_hf_config, hf_config_of, parameter_table_of, shape_from_hf_config
from stagekit.paths import EN_HELDOUT, KO_HELDOUT, KO_TRAIN, REPO

QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
               r"|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
SPARE_ROWS = 37  # rows no id reaches, and no padding multiple explains (like Qwen2.5's 271)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def qwen_like_tokenizer(directory: Path, vocab_size: int = 700) -> Path:
    """A byte-level BPE learned on English text, with Qwen2's pre-tokenizer and specials and no BOS."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIALS), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    lines = [line for line in EN_HELDOUT.read_text(encoding="utf-8").splitlines() if line.strip()]
    tokenizer.train_from_iterator(lines, trainer)
    tokenizer.add_special_tokens(SPECIALS)
    directory.mkdir(parents=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None, "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "add_bos_token": False}))
    return directory


def tiny_qwen2(directory: Path, tokenizer: Path, tied: bool, seed: int = 0) -> Path:
    from tokenizers import Tokenizer
    from transformers import Qwen2Config, Qwen2ForCausalLM

    ids = Tokenizer.from_file(str(tokenizer / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    eos = Tokenizer.from_file(str(tokenizer / "tokenizer.json")).token_to_id("<|endoftext|>")
    config = Qwen2Config(vocab_size=ids + SPARE_ROWS, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, rms_norm_eps=1e-6,
                         tie_word_embeddings=tied, bos_token_id=None, eos_token_id=eos)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".bias") or name.endswith("norm.weight"):  # HF initializes both to constants
                param.add_(0.1 * torch.randn_like(param))
    model.save_pretrained(directory)
    for item in tokenizer.iterdir():
        shutil.copy(item, directory / item.name)
    return directory


def merged_ids(tokenizer: Path) -> int:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tokenizer / "tokenizer.json")).get_vocab_size(with_added_tokens=True)


def run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def verify_tp2(hf: Path, megatron: Path, out: Path) -> dict:
    run("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "checkpoints.verify",
        "--hf", str(hf), "--megatron", str(megatron), "--layouts", "2x1,1x1", "--json", str(out))
    return json.loads(out.read_text())


def converter_knowing(tokenizer: Path, target: Path) -> Path:
    """The pinned llama.cpp converter with this tokenizer's checksum registered as Qwen2's pre-tokenizer, the
    line llama.cpp's convert_hf_to_gguf_update.py writes for a new tokenizer (a synthetic one has no entry)."""
    from transformers import AutoTokenizer

    from serving.gguf_export import converter

    source = converter(None)[0].parent
    shutil.copytree(source, target)
    base_py = target / "conversion" / "base.py"
    text = base_py.read_text(encoding="utf-8")
    chktxt = eval(re.search(r"\n\s+chktxt = ('.*')\n", text).group(1))  # a plain string literal
    from hashlib import sha256

    chkhsh = sha256(str(AutoTokenizer.from_pretrained(tokenizer).encode(chktxt)).encode()).hexdigest()
    text = text.replace("        res = None\n", f"        res = None\n        if chkhsh == {chkhsh!r}:\n            res = \"qwen2\"\n", 1)
    base_py.write_text(text, encoding="utf-8")
    return target


# ----------------------------------------------------------------------------------- the family (fast)


def test_qwen2_config_is_its_own_family_with_qkv_bias_and_round_trips():
    from transformers import Qwen2Config

    config = Qwen2Config(vocab_size=1000, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, tie_word_embeddings=True).to_dict()
    family = family_of_hf_config(config)
    shape = shape_from_hf_config(config)
    assert family is QWEN2 and shape.family == "qwen2" and family.megatron_config_args() == {"add_qkv_bias": True}
    assert (family.hf_architecture, family.gguf_arch, shape.rms_norm_eps) == ("Qwen2ForCausalLM", "qwen2", 1e-6)
    written = hf_config_of(shape)
    assert written["model_type"] == "qwen2" and written["architectures"] == ["Qwen2ForCausalLM"]
    assert shape_from_hf_config(Qwen2Config(**written).to_dict()) == shape
    names = {n for p in parameter_table_of(shape, 1024) for n in p.hf_names}
    assert {f"model.layers.1.self_attn.{x}_proj.bias" for x in "qkv"} <= names and "lm_head.weight" not in names
    with pytest.raises(ValueError, match="sliding-window"):
        shape_from_hf_config({**config, "use_sliding_window": True})
    with pytest.raises(ValueError, match="model_type 'gpt2'"):
        family_of_hf_config({**config, "model_type": "gpt2"})


def test_qwen2_bias_rows_follow_megatrons_query_groups():
    """linear_qkv.bias = [q biases of group g; k bias g; v bias g] per group, like its weight."""
    shape = shape_from_hf_config({"model_type": "qwen2", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
                                  "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2})
    bias = next(p for p in parameter_table_of(shape) if p.megatron_name.endswith("linear_qkv.bias"))
    prefix = "model.layers.0.self_attn"
    assert [(b.hf_name[len(prefix) + 1:], b.start, b.count) for b in bias.rows] == [
        ("q_proj.bias", 0, 4), ("k_proj.bias", 0, 2), ("v_proj.bias", 0, 2),
        ("q_proj.bias", 4, 4), ("k_proj.bias", 2, 2), ("v_proj.bias", 2, 2)]


# ----------------------------------------------------------------------------- end to end (processes)


@pytest.fixture(scope="module")
def qwen_tokenizers(tmp_path_factory):
    from tokenizer import merge as merge_cmd
    from tokenizer import train as train_cmd

    root = tmp_path_factory.mktemp("qwen2")
    base = qwen_like_tokenizer(root / "base-tokenizer")
    assert train_cmd.main(["--input", str(KO_TRAIN), "--vocab-size", "600", "--output", str(root / "ko"),
                           "--base", str(base), "--sample-size", "5000"]) == 0
    assert merge_cmd.main(["--base", str(base), "--add", str(root / "ko.json"), "--output", str(root / "merged"),
                           "--eval-code-files", "0", "--eval-max-lines", "50", "--no-plot"]) == 0
    return root, base, root / "merged"


@pytest.mark.slow
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_qwen2_resize_convert_verify_round_trip(qwen_tokenizers, tied, tmp_path):
    from checkpoints import resize as resize_cmd
    from tokenizers import Tokenizer

    root, base, merged = qwen_tokenizers
    model = tiny_qwen2(tmp_path / "qwen2", base, tied)
    base_ids = Tokenizer.from_file(str(base / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    merged_ids = Tokenizer.from_file(str(merged / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    assert resize_cmd.main(["--model", str(model), "--tokenizer", str(merged), "--output", str(tmp_path / "resized")]) == 0
    report = json.loads((tmp_path / "resized" / "resize_report.json").read_text())
    assert (report["model_family"], report["old_vocab_size"], report["base_vocab_size"]) == ("qwen2", base_ids + SPARE_ROWS, base_ids)
    assert report["vocab_size"] == merged_ids > base_ids + SPARE_ROWS and report["tied_embeddings"] == tied
    with safe_open(model / "model.safetensors", "pt") as a, safe_open(tmp_path / "resized" / "model.safetensors", "pt") as b:
        assert torch.equal(a.get_tensor("model.embed_tokens.weight")[:base_ids], b.get_tensor("model.embed_tokens.weight")[:base_ids])
        assert torch.equal(a.get_tensor("model.layers.0.self_attn.q_proj.bias"), b.get_tensor("model.layers.0.self_attn.q_proj.bias"))
    megatron, back = tmp_path / "megatron", tmp_path / "back"
    run("-m", "checkpoints.convert", "--to", "megatron", "--input", str(tmp_path / "resized"), "--output", str(megatron))
    for r in verify_tp2(tmp_path / "resized", megatron, tmp_path / "v.json"):
        assert r["max_abs_logit_diff"] <= 1e-4 and abs(r["megatron_loss"] - r["hf_loss"]) <= 1e-5, r
    run("-m", "checkpoints.convert", "--to", "hf", "--input", str(megatron), "--output", str(back), "--tokenizer", str(merged))
    with safe_open(tmp_path / "resized" / "model.safetensors", "pt") as a, safe_open(back / "model.safetensors", "pt") as b:
        assert sorted(a.keys()) == sorted(b.keys()) and ("lm_head.weight" in a.keys()) == (not tied)
        assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())
    assert json.loads((back / "config.json").read_text())["architectures"] == ["Qwen2ForCausalLM"]


@pytest.mark.slow
def test_qwen2_trained_at_tp2_converted_back_verified_and_exported_with_llama_cpp_ids(qwen_tokenizers, tmp_path, capsys,
                                                                                       llama_cpp_python):
    from checkpoints import convert as convert_cmd
    from checkpoints import resize as resize_cmd
    from corpus.shards import write_texts_as_corpus
    from pipelines.tokenize_corpus import main as tokenize
    from serving.gguf_export import main as export_gguf
    from tests.support.pretrain import korean_lines

    root, base, merged = qwen_tokenizers
    model = tiny_qwen2(tmp_path / "qwen2", base, tied=False)
    resized, megatron, back = tmp_path / "resized", tmp_path / "megatron", tmp_path / "back"
    assert resize_cmd.main(["--model", str(model), "--tokenizer", str(merged), "--output", str(resized)]) == 0
    assert convert_cmd.main(["--to", "megatron", "--input", str(resized), "--output", str(megatron)]) == 0
    # no BOS: tokenize refuses the tokenizer unless told --no-bos
    write_texts_as_corpus(tmp_path / "corpus", korean_lines(300), 2)
    assert tokenize([str(tmp_path / "corpus"), str(tmp_path / "refused"), "--tokenizer", str(merged)], prog="tokenize") == 2
    assert tokenize([str(tmp_path / "corpus"), str(tmp_path / "data"), "--tokenizer", str(merged), "--no-bos",
                     "--direct_running_mode=in_memory", "--direct_num_workers=1"], prog="tokenize") == 0
    capsys.readouterr()
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"pretrain": {
        "tokenizer": str(merged), "init": {"megatron_checkpoint": str(megatron)}, "micro_batch_size": 2,
        "global_batch_size": 2, "seq_length": 64, "train_steps": 3, "parallel": {"tensor": 2},
        "optimizer": {"lr": 1.0e-3, "min_lr": 1.0e-4, "warmup_steps": 1},
        "data": {"blend": [{"path": str(tmp_path / "data")}], "split": "90,10,0"}, "eval": {"interval": 0, "iters": 1},
        "checkpoint": {"dir": str(tmp_path / "run"), "interval": 3, "keep_last": 2}}}))
    run("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(REPO / "pretrain" / "train.py"), str(config))
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and all(0 < loss < 20 for loss in losses)
    run("-m", "checkpoints.convert", "--to", "hf", "--input", str(tmp_path / "run"), "--output", str(back), "--tokenizer", str(merged))
    for r in verify_tp2(back, tmp_path / "run", tmp_path / "v.json"):
        assert r["max_abs_logit_diff"] <= 1e-4, r
    with safe_open(resized / "model.safetensors", "pt") as a, safe_open(back / "model.safetensors", "pt") as b:
        assert not torch.equal(a.get_tensor("model.layers.0.self_attn.k_proj.bias"), b.get_tensor("model.layers.0.self_attn.k_proj.bias"))
    # GGUF: llama.cpp's Qwen2 arch, Qwen2's pre-tokenizer, its ids = Hugging Face's, log-probs within f32 tolerance
    from serving.gguf_check import check_gguf

    llama_cpp = converter_knowing(back, tmp_path / "llama.cpp")
    out = tmp_path / "qwen2-ko.gguf"
    code = export_gguf(["--model", str(back), "--output", str(out), "--outtype", "f32", "--llama-cpp", str(llama_cpp),
                        "--no-check"], prog="kocpt export gguf")
    assert code == 0, capsys.readouterr()
    checked = check_gguf(out, back, [str(KO_HELDOUT), str(EN_HELDOUT)])
    assert checked["log_probs"]["max_abs_diff"] <= checked["log_probs"]["tolerance"] and checked["vocab"]["gguf"] == merged_ids(merged)
    # Every id agrees but NFD Hangul's: transformers' Qwen2Tokenizer composes it (NFC, as Qwen's own tokenizer does),
    # llama.cpp has no normalizer, so it spells jamo in bytes. Real Qwen2.5 GGUFs share this; NFC text is unaffected.
    kinds = {d["kind"] for d in checked["ids"]["disagreements"]}
    assert checked["ids"]["encodings"] > 2000 and kinds <= {"nfd hangul", "nfd hangul (after BOS)"}, kinds
    sys.path.insert(0, str(llama_cpp / "gguf-py"))
    try:
        from gguf import GGUFReader
    finally:
        sys.path.pop(0)
    fields = GGUFReader(str(out)).fields
    text = {key: bytes(fields[key].parts[fields[key].data[0]]).decode() for key in ("general.architecture", "tokenizer.ggml.pre")}
    assert text == {"general.architecture": "qwen2", "tokenizer.ggml.pre": "qwen2"}
