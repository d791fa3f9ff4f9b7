"""HF ⇄ Megatron-Core conversion checked with real Megatron processes (gloo, torchrun, 2 ranks).

Vocabulary 1,100 is padded to 1,152 at TP=1 and to 1,280 at TP=2, so loading a TP=1 checkpoint at
TP=2 exercises the padding rows; the GQA model has 2 query groups of 2 heads.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from sentencepiece import sentencepiece_model_pb2 as pb

from checkpoints.convert import main
from mcore_llama.mapping import Param, RowBlock, parameter_table
from checkpoints.tiny_llama import tiny_llama_config, write_tiny_llama
from stagekit.paths import LLAMA2_TOKENIZER
from tests.support.convert_runs import TOLERANCE, run, verify


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("convert")
    out = {}
    for name, kv in (("mha", None), ("gqa", 2)):
        hf = write_tiny_llama(root / f"{name}-hf", tiny_llama_config(vocab_size=1100, num_key_value_heads=kv))
        megatron = root / f"{name}-megatron"
        run("-m", "checkpoints.convert", "--to", "megatron", "--input", str(hf), "--output", str(megatron))
        out[name] = {"hf": hf, "megatron": megatron}
    tokenizer = root / "tokenizer"
    tokenizer.mkdir()
    # Llama-2's tokenizer cut to the tiny model's 1,100 pieces (a valid SentencePiece BPE model).
    proto = pb.ModelProto()
    proto.ParseFromString((LLAMA2_TOKENIZER).read_bytes())
    del proto.pieces[1100:]
    (tokenizer / "tokenizer.model").write_bytes(proto.SerializeToString())
    (tokenizer / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    big = root / "tokenizer-32k"
    big.mkdir()
    shutil.copy(LLAMA2_TOKENIZER, big / "tokenizer.model")
    out["root"], out["tokenizer"], out["tokenizer_32k"] = root, tokenizer, big
    return out


def test_checkpoint_layout_and_metadata(models):
    megatron = models["gqa"]["megatron"]
    assert (megatron / "metadata.json").is_file() and list(megatron.glob("*.distcp"))
    meta = json.loads((megatron / "kocpt_model.json").read_text())
    assert meta["shape"]["vocab_size"] == 1100 and meta["padded_vocab_size"] == 1152
    assert meta["shape"]["num_key_value_heads"] == 2 and meta["dtype"] == "float32"


def test_gqa_logits_match_at_tp1_tp2_pp2_and_tp1_checkpoint_loads_at_tp2(models, tmp_path):
    reports = verify(models["gqa"]["hf"], models["gqa"]["megatron"], "1x1,2x1,1x2", tmp_path / "r.json")
    assert [(r["tp"], r["pp"]) for r in reports] == [(1, 1), (2, 1), (1, 2)]
    for r in reports:
        assert r["max_abs_logit_diff"] <= TOLERANCE, r
        assert abs(r["megatron_loss"] - r["hf_loss"]) <= 1e-5, r
        # padded ids can never be generated: their logits are the dtype's minimum
        assert r["padded_logits_max"] == torch.finfo(torch.float32).min
    tp1, tp2 = reports[0], reports[1]
    assert (tp1["padded_vocab_size"], tp2["padded_vocab_size"]) == (1152, 1280)
    assert abs(tp1["megatron_loss"] - tp2["megatron_loss"]) <= 1e-6


def test_mha_logits_match_from_checkpoint_and_direct_hf_load(models, tmp_path):
    for source in (models["mha"]["megatron"], None):  # None: each rank reads its slices from safetensors
        for r in verify(models["mha"]["hf"], source, "2x1,1x2", tmp_path / "r.json"):
            assert r["max_abs_logit_diff"] <= TOLERANCE, (source, r)


@pytest.mark.parametrize("name", ["mha", "gqa"])
def test_hf_megatron_hf_is_bit_identical(models, name):
    back = models["root"] / f"{name}-back"
    run("-m", "checkpoints.convert", "--to", "hf", "--input", str(models[name]["megatron"]), "--output", str(back),
        "--tokenizer", str(models["tokenizer"]))
    original = models[name]["hf"] / "model.safetensors"
    with safe_open(original, "pt") as a, safe_open(back / "model.safetensors", "pt") as b:
        assert sorted(a.keys()) == sorted(b.keys())
        for key in a.keys():
            assert torch.equal(a.get_tensor(key), b.get_tensor(key)), key
    config = json.loads((back / "config.json").read_text())
    assert config["vocab_size"] == 1100 and config["architectures"] == ["LlamaForCausalLM"]
    assert (back / "generation_config.json").is_file() and (back / "tokenizer.model").is_file()
    assert (back / "tokenizer_config.json").is_file()
    from transformers import LlamaForCausalLM

    assert LlamaForCausalLM.from_pretrained(back).config.num_key_value_heads == (2 if name == "gqa" else 4)


# ----------------------------------------------------------------- a wrong mapping is caught


def gate_up_swapped(shape, padded=None):
    table = parameter_table(shape, padded)
    return [Param(p.megatron_names, tuple(reversed(p.rows))) if "linear_fc1.weight" in p.megatron_name else p for p in table]


def qkv_not_grouped(shape, padded=None):
    """The classic bug: [all q; all k; all v] instead of [q_g; k_g; v_g] per query group."""
    table = parameter_table(shape, padded)
    out = []
    for p in table:
        if "linear_qkv.weight" in p.megatron_name:
            prefix = p.rows[0].hf_name.rsplit(".", 2)[0]
            blocks = [RowBlock(f"{prefix}.{x}_proj.weight", 0, sum(b.count for b in p.rows if b.hf_name.endswith(f"{x}_proj.weight"))) for x in "qkv"]
            p = Param(p.megatron_names, tuple(blocks))
        out.append(p)
    return out


def _wrong_mapping_worker(hf_dir: str, megatron_dir: str, queue) -> None:
    import checkpoints.verify as verify_module
    from mcore_llama.weights import load_megatron_checkpoint_into  # noqa: F401  (imports Megatron)

    result = {}
    for name, table_fn in (("right", None), ("gate_up_swapped", gate_up_swapped), ("qkv_not_grouped", qkv_not_grouped)):
        result[name] = verify_module.compare(Path(hf_dir), None, [(1, 1)], table_fn=table_fn)[0]["max_abs_logit_diff"]
    # Safety: a checkpoint whose pickled part would run code is refused, and the code never runs.
    evil = Path(megatron_dir).parent / "evil-megatron"
    shutil.copytree(megatron_dir, evil)
    marker = evil / "pwned"
    (evil / "common.pt").write_bytes(pickle.dumps(_Evil(str(marker))))
    from megatron.core import parallel_state

    from mcore_llama.build import build_gpt_model
    from mcore_llama.runtime import apply_cpu_shim
    from mcore_llama.families import shape_from_hf_dir

    apply_cpu_shim()
    parallel_state.initialize_model_parallel(1, 1)
    model = build_gpt_model(shape_from_hf_dir(hf_dir), use_transformer_engine=False, perform_initialization=False)
    try:
        load_megatron_checkpoint_into(model, evil)
        result["evil"] = "loaded"
    except Exception as exc:  # noqa: BLE001
        result["evil"] = type(exc).__name__
    result["evil_ran"] = marker.exists()
    queue.put(result)


class _Evil:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_wrong_mappings_are_caught_by_the_logits_check_and_pickles_cannot_run_code(models):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_wrong_mapping_worker, args=(str(models["gqa"]["hf"]), str(models["gqa"]["megatron"]), queue))
    proc.start()
    result = queue.get(timeout=300)
    proc.join(60)
    assert result["right"] <= TOLERANCE
    assert result["gate_up_swapped"] > 100 * TOLERANCE
    assert result["qkv_not_grouped"] > 100 * TOLERANCE
    assert result["evil"] != "loaded" and not result["evil_ran"]


# ----------------------------------------------------------------- command-line errors


def _fail(argv, capsys) -> str:
    assert main(argv, prog="kocpt checkpoints convert") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("kocpt checkpoints convert: error: ")
    return err


def test_bad_inputs_fail_with_one_line(models, tmp_path, capsys):
    not_llama = tmp_path / "not-llama"
    shutil.copytree(models["mha"]["hf"], not_llama)
    config = json.loads((not_llama / "config.json").read_text())
    (not_llama / "config.json").write_text(json.dumps({**config, "model_type": "mistral"}))
    assert "is not a family this project handles" in _fail(["--to", "megatron", "--input", str(not_llama), "--output", str(tmp_path / "o")], capsys)

    wrong_shape = tmp_path / "wrong-shape"
    shutil.copytree(models["mha"]["hf"], wrong_shape)
    (wrong_shape / "config.json").write_text(json.dumps({**config, "intermediate_size": 100}))
    assert "gate_proj.weight has shape" in _fail(["--to", "megatron", "--input", str(wrong_shape), "--output", str(tmp_path / "o")], capsys)

    assert "no kocpt_model.json" in _fail(["--to", "hf", "--input", str(models["mha"]["hf"]), "--output", str(tmp_path / "o")], capsys)
    err = _fail(["--to", "hf", "--input", str(models["mha"]["megatron"]), "--output", str(tmp_path / "o"),
                 "--tokenizer", str(models["tokenizer_32k"])], capsys)
    assert "32,000 ids but the model" in err and "only 1,100 rows" in err
    assert not (tmp_path / "o").exists()


def cut_llama2_tokenizer(directory: Path, pieces: int, rename: dict[int, str] | None = None) -> Path:
    proto = pb.ModelProto()
    proto.ParseFromString(LLAMA2_TOKENIZER.read_bytes())
    del proto.pieces[pieces:]
    for index, piece in (rename or {}).items():
        proto.pieces[index].piece = piece
    directory.mkdir()
    (directory / "tokenizer.model").write_bytes(proto.SerializeToString())
    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    return directory


def test_a_tokenizer_of_another_model_is_refused_on_the_way_back(models, tmp_path, capsys):
    """Fewer ids than rows only as padding makes them; same size is not enough: the pieces the model
    was converted with are recorded in kocpt_model.json and checked."""
    smaller = cut_llama2_tokenizer(tmp_path / "tok-1000", 1000)
    err = _fail(["--to", "hf", "--input", str(models["mha"]["megatron"]), "--output", str(tmp_path / "o"),
                 "--tokenizer", str(smaller)], capsys)
    assert "1,000 ids, but the model" in err and "no vocabulary padding explains" in err

    with_tokenizer = tmp_path / "hf-with-tokenizer"
    shutil.copytree(models["mha"]["hf"], with_tokenizer)
    shutil.copy(models["tokenizer"] / "tokenizer.model", with_tokenizer / "tokenizer.model")
    megatron = tmp_path / "megatron"
    run("-m", "checkpoints.convert", "--to", "megatron", "--input", str(with_tokenizer), "--output", str(megatron))
    recorded = json.loads((megatron / "kocpt_model.json").read_text())["tokenizer"]
    assert recorded["ids"] == 1100
    other = cut_llama2_tokenizer(tmp_path / "tok-other", 1100, {700: "▁다른"})
    err = _fail(["--to", "hf", "--input", str(megatron), "--output", str(tmp_path / "o"), "--tokenizer", str(other)], capsys)
    assert "not the tokenizer" in err and not (tmp_path / "o").exists()


def test_output_onto_its_input_or_a_foreign_directory_is_refused(models, tmp_path, capsys):
    megatron = models["mha"]["megatron"]
    before = sorted(p.name for p in megatron.iterdir())
    assert "is --input" in _fail(["--to", "hf", "--input", str(megatron), "--output", str(megatron), "--overwrite"], capsys)
    assert "is --tokenizer" in _fail(["--to", "hf", "--input", str(megatron), "--output", str(models["tokenizer"]),
                                      "--tokenizer", str(models["tokenizer"]), "--overwrite"], capsys)
    assert sorted(p.name for p in megatron.iterdir()) == before
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "weights.bin").write_bytes(b"x")
    assert "not an output of kocpt checkpoints convert" in _fail(
        ["--to", "megatron", "--input", str(models["mha"]["hf"]), "--output", str(foreign), "--overwrite"], capsys)
    assert (foreign / "weights.bin").read_bytes() == b"x"
