"""The Llama-3 family in the HF ⇄ Megatron table: tied embeddings, GQA with one KV head, rope_theta
500,000 and Llama-3.1's RoPE scaling, checked by logits at TP=1/2 and PP=2 (real torchrun
processes) and by a bit-identical round trip; the `model:` section describes them and `kocpt plan`
counts a tied embedding once.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch
from safetensors import safe_open

from checkpoints.tiny_llama import LLAMA3_VARIANTS, tiny_llama3_config, write_tiny_llama
from mcore_llama.families import hf_config_of, shape_from_hf_config, shape_from_hf_dir
from mcore_llama.shape import LlamaShape
from pretrain import plan
from pretrain.config import ModelSection
from stagekit.config import load_section
from stagekit.paths import REPO
from tests.support.convert_runs import PYTHON, TOLERANCE, run

SEQ = 96  # past the variants' original RoPE context (32/64), so every scaled band is exercised


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    root = tmp_path_factory.mktemp("llama3")
    out = {}
    for name in LLAMA3_VARIANTS:
        hf = write_tiny_llama(root / f"{name}-hf", tiny_llama3_config(name, vocab_size=1100))
        megatron = root / f"{name}-megatron"
        run("-m", "checkpoints.convert", "--to", "megatron", "--input", str(hf), "--output", str(megatron))
        out[name] = {"hf": hf, "megatron": megatron, "root": root}
    return out


def verify_long(hf, megatron, layouts, out):
    args = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "checkpoints.verify",
            "--hf", str(hf), "--layouts", layouts, "--seq-length", str(SEQ), "--json", str(out)]
    if megatron is not None:
        args += ["--megatron", str(megatron)]
    run(*args)
    return json.loads(out.read_text())


# ----------------------------------------------------------------- shapes (no Megatron process)


def test_hf_configs_of_the_variants_parse_with_their_traits(tmp_path):
    shapes = {}
    for name in LLAMA3_VARIANTS:
        shapes[name] = shape_from_hf_config(tiny_llama3_config(name).to_dict())
    assert shapes["tied-gqa"].tie_word_embeddings and shapes["tied-gqa"].num_key_value_heads == 1
    assert shapes["tied-gqa"].rope_theta == 100000.0 and shapes["tied-gqa"].rope_scaling is None
    assert shapes["llama3.1"].rope_scaling == {
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    }
    # transformers 4.x spelling: rope_scaling beside a top-level rope_theta
    old = {**tiny_llama3_config("llama3.1").to_dict(), "rope_theta": 500000.0}
    old["rope_scaling"] = {k: v for k, v in old.pop("rope_parameters").items() if k != "rope_theta"}
    assert shape_from_hf_config(old) == shapes["llama3.1"]
    # a shape written without a base config round-trips through HF's own LlamaConfig
    from transformers import LlamaConfig

    config = hf_config_of(shapes["llama3.2"])
    assert shape_from_hf_config(LlamaConfig(**config).to_dict()) == shapes["llama3.2"]
    for bad, message in (({"rope_type": "yarn", "factor": 4.0}, "'yarn' is not supported"),
                         ({"rope_type": "llama3", "factor": 8.0}, "without low_freq_factor")):
        with pytest.raises(ValueError, match=message):
            shape_from_hf_config({**config, "rope_parameters": {"rope_theta": 5e5, **bad}})


def test_model_section_describes_tied_rope_scaled_models(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  num_key_value_heads: 1\n  tie_word_embeddings: true\n  rope_theta: 500000\n"
                    "  rope_scaling: {factor: 32, low_freq_factor: 2, high_freq_factor: 8, original_max_position_embeddings: 32}\n")
    shape = LlamaShape.from_model_section(load_section(ModelSection, "model", path, []), 1100)
    expected = shape_from_hf_config(tiny_llama3_config("llama3.2", vocab_size=1100, intermediate_size=172,
                                                            max_position_embeddings=4096).to_dict())
    assert shape == expected
    path.write_text("model:\n  rope_scaling: {factr: 32}\n")
    with pytest.raises(Exception, match="unknown key.*factr"):
        load_section(ModelSection, "model", path, [])


def test_plan_counts_a_tied_embedding_once(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(plan, "DEFAULT_MEASUREMENT", tmp_path / "absent.json")
    llama32_1b = ["model.hidden_size=2048", "model.intermediate_size=8192", "model.num_hidden_layers=16",
                  "model.num_attention_heads=32", "model.num_key_value_heads=8", "model.vocab_size=128256",
                  "model.rope_theta=500000", "model.base_vocab_size=128000"]
    counts = {}
    for tied in ("true", "false"):
        sets = [f"--set={s}" for s in [*llama32_1b, f"model.tie_word_embeddings={tied}"]]
        assert plan.main([str(REPO / "configs" / "llama2-7b.yaml"), *sets, "--json", str(tmp_path / "p.json")]) == 0
        counts[tied] = json.loads((tmp_path / "p.json").read_text())["model"]["parameters"]
    capsys.readouterr()
    assert counts["true"] == 1_235_814_400  # Llama-3.2-1B's published parameter count
    assert counts["false"] - counts["true"] == 128256 * 2048


@pytest.mark.slow
def test_megatron_rope_frequencies_equal_transformers_llama3(tmp_path):
    """Megatron's rope_scaling flag fixes low/high/original at 3.1's values; ours uses all four."""
    code = """
import json, sys, torch
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from checkpoints.tiny_llama import tiny_llama3_config
from mcore_llama.build import build_gpt_model
from mcore_llama.runtime import single_process_megatron
from mcore_llama.families import shape_from_hf_config
out = {}
for name in ("llama3.1", "llama3.2"):
    config = tiny_llama3_config(name)
    hf_freq, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    with single_process_megatron():
        model = build_gpt_model(shape_from_hf_config(config.to_dict()), use_transformer_engine=False)
        ours = model.rotary_pos_emb.inv_freq
        flag_only = model.rotary_pos_emb._apply_scaling(1.0 / (500000.0 ** (torch.arange(0, 16, 2).float() / 16)), factor=config.rope_parameters["factor"])
    out[name] = [float((ours - hf_freq).abs().max()), float((flag_only - hf_freq).abs().max() / hf_freq.abs().max())]
print(json.dumps(out))
"""
    result = subprocess.run([PYTHON, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    diffs = json.loads(result.stdout.strip().splitlines()[-1])
    for name, (ours, flag_only) in diffs.items():
        assert ours <= 1e-12, (name, ours)
        assert flag_only > 1e-3, (name, flag_only)  # Megatron's fixed parameters would be wrong


# ----------------------------------------------------------------- conversion (real processes)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LLAMA3_VARIANTS))
def test_logits_match_at_tp1_tp2_pp2(variants, name, tmp_path):
    reports = verify_long(variants[name]["hf"], variants[name]["megatron"], "1x1,2x1,1x2", tmp_path / "r.json")
    assert [(r["tp"], r["pp"]) for r in reports] == [(1, 1), (2, 1), (1, 2)]
    for r in reports:
        assert r["max_abs_logit_diff"] <= TOLERANCE, r
        assert abs(r["megatron_loss"] - r["hf_loss"]) <= 1e-5, r
        assert r["padded_logits_max"] == torch.finfo(torch.float32).min


@pytest.mark.slow
def test_a_model_whose_rope_scaling_is_ignored_is_caught(variants, tmp_path):
    """The same weights under plain RoPE: the logits check sees the difference."""
    plain = tmp_path / "plain"
    plain.mkdir()
    hf = variants["llama3.2"]["hf"]
    for item in hf.iterdir():
        (plain / item.name).symlink_to(item)
    config = json.loads((hf / "config.json").read_text())
    (plain / "config.json").unlink()
    (plain / "config.json").write_text(json.dumps({**config, "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}}))
    result = subprocess.run(
        [PYTHON, "-m", "checkpoints.verify", "--hf", str(plain), "--megatron", str(variants["llama3.2"]["megatron"]),
         "--seq-length", str(SEQ), "--json", str(tmp_path / "r.json")],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1 and "MISMATCH" in result.stdout, result.stderr[-3000:]
    assert json.loads((tmp_path / "r.json").read_text())[0]["max_abs_logit_diff"] > 10 * TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LLAMA3_VARIANTS))
def test_hf_megatron_hf_is_bit_identical(variants, name):
    back = variants[name]["root"] / f"{name}-back"
    run("-m", "checkpoints.convert", "--to", "hf", "--input", str(variants[name]["megatron"]), "--output", str(back))
    with safe_open(variants[name]["hf"] / "model.safetensors", "pt") as a, safe_open(back / "model.safetensors", "pt") as b:
        assert sorted(a.keys()) == sorted(b.keys())
        assert ("lm_head.weight" in a.keys()) == (not LLAMA3_VARIANTS[name].get("tie_word_embeddings", False))
        for key in a.keys():
            assert torch.equal(a.get_tensor(key), b.get_tensor(key)), key
    original = json.loads((variants[name]["hf"] / "config.json").read_text())
    config = json.loads((back / "config.json").read_text())
    for key in ("tie_word_embeddings", "num_key_value_heads", "rope_parameters"):
        assert config[key] == original[key], key
    assert shape_from_hf_dir(back) == shape_from_hf_dir(variants[name]["hf"])
