"""`kocpt eval` end to end on a tiny exported-style model: eval.json, eval.md, plots, bad input."""

from __future__ import annotations

import json

import pytest

from evaluation import BadInput
from evaluation.config import load_eval_config
from evaluation.report import read_scalars
from evaluation.run import main
from stagekit.paths import LLAMA2_TOKENIZER, REPO
from stagekit.paths import EN_HELDOUT, KO_HELDOUT
from tests.support.models import write_exported_model

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tensorboard_dir(tmp_path_factory):
    """Logs as pretrain/train.py writes them, including a resumed run that rewrites steps 9-10."""
    from torch.utils.tensorboard import SummaryWriter

    root = tmp_path_factory.mktemp("tb")
    first = SummaryWriter(str(root))
    for step in range(1, 11):
        first.add_scalar("loss", 10.0 - 0.5 * step, step)
        first.add_scalar("lr", 1e-3, step)
    first.add_scalar("val_bpc", 9.0, 5)
    first.add_scalar("val_bpc", 8.0, 10)
    first.close()
    resumed = SummaryWriter(str(root))  # a second event file in the same folder
    for step in range(9, 13):
        resumed.add_scalar("loss", 4.0 - 0.1 * step, step)
    resumed.add_scalar("val_bpc", 7.5, 10)
    resumed.add_scalar("val_bpc", 7.0, 12)
    resumed.close()
    return root


@pytest.fixture(scope="module")
def tokenizer_report(tmp_path_factory, llama2_tokenizer_dir):
    """A real report.json from the tokenizer stage (the base compared with itself: before == after)."""
    from tokenizer.comparison import EvalTexts
    from tokenizer.spm_report import build_report
    from tokenizer.spm_model import load_model

    report = build_report(llama2_tokenizer_dir, load_model(LLAMA2_TOKENIZER),
                          EvalTexts(korean=[str(KO_HELDOUT)], english=[str(EN_HELDOUT)], code_files=0, max_lines=40),
                          check_hf=False)
    path = tmp_path_factory.mktemp("tokreport") / "report.json"
    path.write_text(json.dumps(report, ensure_ascii=False), encoding="utf-8")
    return path


def test_reads_tensorboard_logs_with_the_resumed_values(tensorboard_dir):
    scalars = read_scalars(tensorboard_dir)
    assert [s for s, _ in scalars["loss"]] == list(range(1, 13))
    assert dict(scalars["loss"])[10] == pytest.approx(3.0)  # the resumed run's value
    assert scalars["val_bpc"] == [(5, 9.0), (10, 7.5), (12, 7.0)]


@pytest.mark.slow
def test_kocpt_eval_writes_the_report(tmp_path, exported_model_dir, tensorboard_dir, tokenizer_report, capsys):
    out = tmp_path / "eval"
    (out).mkdir()
    (out / "training.png").write_bytes(b"stale")  # from an earlier run; this run makes a new one
    rc = main(["--model", str(exported_model_dir), "--label", "trained", "--output", str(out),
               "--baseline", f"base={exported_model_dir},{LLAMA2_TOKENIZER}",
               "--tensorboard", str(tensorboard_dir), "--tokenizer-report", str(tokenizer_report),
               "--korean", str(KO_HELDOUT), "--english", str(EN_HELDOUT), "--max-documents", "8",
               "--tasks", "korsts", "--limit", "4", "--prompt", "대한민국의 수도는", "--max-new-tokens", "6",
               "--no-progress"], prog="kocpt eval")
    stdout = capsys.readouterr().out
    assert rc == 0, stdout
    assert sorted(p.name for p in out.iterdir()) == ["bits_per_char.png", "eval.json", "eval.md", "tokens_per_char.png",
                                                     "training.png"]  # no scratch folder left behind
    for plot in ("bits_per_char.png", "training.png", "tokens_per_char.png"):
        data = (out / plot).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
    result = json.loads((out / "eval.json").read_text(encoding="utf-8"))
    trained, base = result["models"]
    assert (trained["label"], base["label"]) == ("trained", "base")
    assert trained["vocab"] == {"tokenizer": 32000, "model_rows": 32000, "padding_rows": 0}
    ko = trained["bpc"]["korean"][KO_HELDOUT.name]
    assert ko["documents"] == 8 and ko["characters"] == sum(len(line) for line in KO_HELDOUT.read_text().splitlines()[:8])
    assert 10 < ko["bits_per_char"] < 40 and ko["bits_per_byte"] < ko["bits_per_char"]
    assert 0 < ko["bits_per_char_se"] < ko["bits_per_char"] / 4 and len(ko["doc_nll_nats"]) == 8  # an error bar per figure
    # The base row reads the same weights through the SentencePiece file turned into an HF tokenizer
    # on the fly: the same ids, so the same figures.
    for kind in ("korean", "english"):
        for name, row in trained["bpc"][kind].items():
            assert base["bpc"][kind][name]["tokens"] == row["tokens"]
            assert base["bpc"][kind][name]["bits_per_char"] == pytest.approx(row["bits_per_char"], rel=1e-6)
    assert set(trained["tasks"]) == {"korsts"} and trained["task_samples"]["korsts"]["effective"] == 4
    assert 0 <= trained["tasks"]["korsts"]["acc"] <= 1
    sample = trained["generation"][0]
    assert sample["prompt"] == "대한민국의 수도는" and isinstance(sample["completion"], str) and sample["new_tokens"] == 6
    training = result["training"]
    assert (training["loss_first"], training["loss_last"]) == (pytest.approx(9.5), pytest.approx(2.8))
    assert (training["val_bpc_first"], training["val_bpc_last"]) == (9.0, 7.0)
    tok = result["tokenizer"]["korean"][KO_HELDOUT.name]
    assert tok["base"]["tokens_per_char"] == tok["merged"]["tokens_per_char"] > 1.0
    markdown = (out / "eval.md").read_text(encoding="utf-8")
    assert "| **trained** | 4,196,672 | 32,000 |" in markdown and "| **base** |" in markdown
    assert f"{ko['bits_per_char']:.3f} ± {ko['bits_per_char_se']:.3f}" in markdown
    for heading in ("## Korean tasks", "## Tokenizer", "## Training", "## Generation samples", "![training](training.png)"):
        assert heading in markdown
    assert "wrote " in stdout and "trained: Korean" in stdout


def _run_bad(args, capsys) -> str:
    rc = main(args, prog="kocpt eval")
    err = capsys.readouterr().err.strip()
    # our message is one line, the last; above it only what libraries print (progress bars, load reports)
    assert rc == 2 and "Traceback" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith("kocpt eval: error: "), err
    return last


def test_bad_input_is_one_line_and_keeps_the_previous_report(tmp_path, exported_model_dir, llama2_tokenizer_dir, capsys):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "eval.json").write_text('{"previous": true}')
    common = ["--output", str(out), "--korean", str(KO_HELDOUT), "--english", "--max-documents", "2",
              "--tasks", "none", "--max-new-tokens", "0", "--no-progress"]
    assert "no config.json" in _run_bad(["--model", str(tmp_path)] + common, capsys)
    assert "model directory not found" in _run_bad(["--model", str(tmp_path / "nope")] + common, capsys)
    small = write_exported_model(tmp_path / "small", llama2_tokenizer_dir)
    (small / "config.json").write_text((small / "config.json").read_text().replace('"vocab_size": 32000', '"vocab_size": 1000'))
    assert "weights do not match its config.json" in _run_bad(["--model", str(small)] + common, capsys)
    tiny_vocab = tmp_path / "tiny-vocab"
    from checkpoints.tiny_llama import tiny_llama_config, write_tiny_llama

    write_tiny_llama(tiny_vocab, tiny_llama_config(vocab_size=1000))
    err = _run_bad(["--model", str(tiny_vocab), "--tokenizer", str(llama2_tokenizer_dir)] + common, capsys)
    assert "32,000 ids but the model" in err and "only 1,000 rows" in err
    # Same size, another base: the model's own tokenizer (shipped beside it) disagrees at some id.
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString((llama2_tokenizer_dir / "tokenizer.model").read_bytes())
    proto.pieces[5000].piece = "▁다른"
    (tmp_path / "other.model").write_bytes(proto.SerializeToString())
    err = _run_bad(["--model", str(exported_model_dir), "--tokenizer", str(tmp_path / "other.model")] + common, capsys)
    assert "its id 5000 is '▁다른'" in err
    assert "tokenizer_config.json" in _run_bad(["--model", str(tiny_vocab), "--tokenizer", str(tmp_path)] + common, capsys)
    assert "not a SentencePiece model" in _run_bad(
        ["--model", str(tiny_vocab), "--tokenizer", str(small / "config.json")] + common, capsys)
    assert "TensorBoard" in _run_bad(["--model", str(exported_model_dir), "--tensorboard", str(tmp_path)] + common, capsys)
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("eval:\n  max_documents: many\n")
    assert "eval.max_documents: expected int" in _run_bad(["--model", str(exported_model_dir), "--config", str(bad_config)] + common, capsys)
    assert json.loads((out / "eval.json").read_text()) == {"previous": True}


def test_skip_missing_names_what_it_skipped(tmp_path, exported_model_dir, capsys):
    out = tmp_path / "eval"
    rc = main(["--model", str(exported_model_dir), "--output", str(out), "--korean", str(KO_HELDOUT),
               str(tmp_path / "absent.txt"), "--english", "--max-documents", "2", "--tasks", "nsmc",
               "--task-data", f"nsmc={tmp_path / 'absent.tsv'}", "--max-new-tokens", "0", "--skip-missing",
               "--no-progress"], prog="kocpt eval")
    assert rc == 0, capsys.readouterr().err
    result = json.loads((out / "eval.json").read_text())
    assert any("absent.txt" in note for note in result["notes"]) and any("task nsmc" in note for note in result["notes"])
    assert "tasks" not in result["models"][0] and list(result["models"][0]["bpc"]["korean"]) == [KO_HELDOUT.name]


def test_demo_config_eval_section_is_valid():
    config = load_eval_config(REPO / "configs" / "demo.yaml").validate()
    assert config.tasks == ["korsts", "kornli", "nsmc"] and config.limit
    with pytest.raises(BadInput, match="unknown key"):
        load_eval_config(None, ["eval.korea=[]"])


def test_samples_are_greedy_at_temperature_0_and_seeded_when_sampled(exported_model_dir):
    """eval.temperature 0 (the default) is greedy decoding; > 0 samples from the top_k tokens, and the
    same seed gives the same text whatever ran before."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evaluation.run import generate_samples

    model = AutoModelForCausalLM.from_pretrained(exported_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(exported_model_dir)
    prompt = ["대한민국의 수도는"]
    greedy = generate_samples(model, tokenizer, prompt, 8)
    inputs = tokenizer(prompt[0], return_tensors="pt")
    with torch.inference_mode():
        argmax = model.generate(**inputs, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    assert greedy[0]["completion"] == tokenizer.decode(argmax[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    first = generate_samples(model, tokenizer, prompt, 8, temperature=1.0, top_k=50, seed=3)
    torch.rand(100)  # the global generator moves; the seed still fixes the sample
    assert generate_samples(model, tokenizer, prompt, 8, temperature=1.0, top_k=50, seed=3) == first
    others = {generate_samples(model, tokenizer, prompt, 8, temperature=1.0, top_k=50, seed=s)[0]["completion"]
              for s in range(4)}
    assert len(others) > 1 and first[0]["new_tokens"] == 8
    with pytest.raises(BadInput, match="eval.temperature"):
        load_eval_config(None, ["eval.temperature=-1"])
