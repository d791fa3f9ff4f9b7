"""`--lm-head calibrated`: the fit itself on a problem whose answer is known, the windows it reads, and resize
writing the fitted rows (a tied base untied) into a model whose own logits then give the fitted loss."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from checkpoints.config import ResizeSection
from checkpoints.lm_head_calibration import fit_shifts, token_windows
from checkpoints.resize import ResizeJob, main, resize
from checkpoints.tiny_llama import tiny_llama_config, write_tiny_llama
from mcore_llama.hf_checkpoint import HFCheckpoint
from stagekit.paths import LLAMA2_TOKENIZER
from tests.support.models import tied_llama2_resize_inputs

# Pieces the Llama-2 tokenizer reaches once added (each merge's parts are pieces): common in Korean text.
NEW_PIECES = ["니다", "하는", "▁있는", "▁있다", "에서", "으로"]


def objective(hidden, targets, head, new, shifts, prior_std):
    """The fit's objective written plainly, for autograd: mean CE over the full softmax + the prior."""
    mean = hidden.mean(0)
    rows = head.clone()
    rows[new.start:new.stop] = head[new.start:new.stop] + shifts[:, None] * (mean / mean.dot(mean))[None]
    nll = torch.nn.functional.cross_entropy(hidden @ rows.T, targets, reduction="sum")
    return (nll + 0.5 * shifts.dot(shifts) / prior_std ** 2) / len(targets)


def test_fit_recovers_known_shifts_and_stops_at_the_minimum():
    generator = torch.Generator().manual_seed(0)
    n, hidden_size, old, true_shifts = 20000, 8, 40, torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])
    new = range(old, old + len(true_shifts))
    hidden = torch.randn((n, hidden_size), generator=generator) * 0.5 + 1.0  # a mean well away from 0
    head = torch.randn((old + len(true_shifts), hidden_size), generator=generator) * 0.3
    mean = hidden.mean(0)
    truth = head.clone()
    truth[old:] += true_shifts[:, None] * (mean / mean.dot(mean))[None]
    targets = torch.multinomial(torch.softmax(hidden @ truth.T, dim=1), 1, generator=generator)[:, 0]

    shifts, direction, before, after, _ = fit_shifts(hidden, targets, head, new, prior_std=10.0)
    assert torch.allclose(direction, mean / mean.dot(mean))
    assert (shifts - true_shifts).abs().max() < 0.25, shifts  # sampling error only (~0.05-0.1 here)
    assert after < before
    # The fit's own loss, gradient and optimizer against autograd on the plain objective: a stationary point.
    a = shifts.clone().requires_grad_(True)
    value = objective(hidden, targets, head, new, a, 10.0)
    value.backward()
    assert a.grad.abs().max() < 1e-5
    assert abs((float(value.detach()) - 0.5 * float(shifts.dot(shifts)) / 100 / n) - after) < 1e-4


def test_a_strong_prior_keeps_shifts_near_zero():
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn((500, 4), generator=generator) + 1.0
    head = torch.randn((12, 4), generator=generator)
    targets = torch.full((500,), 11)  # every target a new token: its shift wants to grow without bound
    loose = fit_shifts(hidden, targets, head, range(10, 12), prior_std=10.0)[0]
    tight = fit_shifts(hidden, targets, head, range(10, 12), prior_std=0.001)[0]  # a^2 · 500 per token
    assert loose[1] > 3.0 and loose[0] < 0
    assert tight.abs().max() < 0.01
    assert fit_shifts(hidden, targets, head, range(12, 12), prior_std=1.0)[0].numel() == 0  # no new rows: no fit


def test_windows_start_with_bos_split_at_context_and_stop_at_the_token_budget():
    windows, documents = token_windows(iter([[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]), bos_id=1, max_tokens=7, context=3)
    assert windows == [[1, 5, 6, 7], [7, 8, 9], [1, 10, 11]]  # 3 + 2 + 2 targets
    assert documents == 2
    no_bos, _ = token_windows(iter([[5, 6, 7], [8]]), bos_id=-1, max_tokens=100, context=8)
    assert no_bos == [[5, 6, 7]]  # a one-token document predicts nothing without a BOS


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tied_llama2_resize_inputs(tmp_path_factory.mktemp("calibration"), NEW_PIECES, layers=1, text_lines=200)


def test_calibrated_resize_unties_writes_the_fitted_rows_and_lowers_the_loss(work):
    from transformers import LlamaForCausalLM

    from tokenizer.token_encoder import TokenEncoder

    out, fvt = work["root"] / "calibrated", work["root"] / "fvt-untied"
    section = ResizeSection(lm_head="calibrated", calibration_text=str(work["text"]), calibration_tokens=3000,
                            calibration_prior_std=5.0)
    report = resize(ResizeJob(model=work["model"], tokenizer=work["merged"], output=out, section=section), progress=False)
    resize(ResizeJob(model=work["model"], tokenizer=work["merged"], output=fvt, section=ResizeSection(untie=True)),
           progress=False)
    assert report["untied"] and not report["tied_embeddings"] and report["lm_head"] == "calibrated"
    calibration = report["calibration"]
    assert calibration["tokens"] == 3000 and calibration["nats_per_token_after"] < calibration["nats_per_token_before"]
    assert calibration["forward_flops"] > 0 and calibration["shift_max"] > calibration["shift_min"]
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is False

    old = HFCheckpoint(work["model"]).read("model.embed_tokens.weight")
    new, plain = HFCheckpoint(out), HFCheckpoint(fvt)
    head, fvt_head = new.read("lm_head.weight"), plain.read("lm_head.weight")
    assert torch.equal(head[:32000], old) and torch.equal(fvt_head[:32000], old)  # old rows: the tied matrix, bit for bit
    assert torch.equal(new.read("model.embed_tokens.weight"), plain.read("model.embed_tokens.weight"))
    assert torch.equal(fvt_head, plain.read("model.embed_tokens.weight"))  # --untie alone: the head starts as the input rows
    moved = head[32000:] - fvt_head[32000:]  # every new row moved along one direction
    direction = moved[moved.norm(dim=1).argmax()]
    assert torch.allclose(moved, (moved @ direction / direction.dot(direction))[:, None] * direction, atol=1e-6)

    # The written model's own logits on the calibration windows give the loss the fit reports.
    encoder = TokenEncoder.load(out)
    windows, _ = token_windows(iter(encoder.encode_batch(work["text"].read_text(encoding="utf-8").splitlines())),
                               encoder.bos_id, 3000, 512)
    assert any(i >= 32000 for w in windows for i in w[1:])  # new tokens are targets: there is something to fit
    losses = {}
    for name, path in (("calibrated", out), ("fvt", fvt)):
        model = LlamaForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        with torch.no_grad():
            nll = sum(float(torch.nn.functional.cross_entropy(model(torch.tensor([w])).logits[0, :-1], torch.tensor(w[1:]),
                                                              reduction="sum")) for w in windows)
        losses[name] = nll / 3000
    assert abs(losses["calibrated"] - calibration["nats_per_token_after"]) < 1e-3
    assert abs(losses["fvt"] - calibration["nats_per_token_before"]) < 1e-3


def _error(argv, capsys) -> str:
    assert main(argv, prog="kocpt checkpoints resize") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_calibration_refusals_are_one_line(work, tmp_path, capsys):
    base = ["--model", str(work["model"]), "--tokenizer", str(work["merged"]), "--output", str(tmp_path / "out")]
    assert "needs resize.calibration_text" in _error(base + ["--lm-head", "calibrated"], capsys)
    assert "calibration text not found" in _error(base + ["--lm-head", "calibrated", "--calibration-text",
                                                          str(tmp_path / "missing.txt")], capsys)
    (tmp_path / "empty.txt").write_text("\n \n")
    assert "holds no documents" in _error(base + ["--lm-head", "calibrated", "--calibration-text",
                                                  str(tmp_path / "empty.txt")], capsys)
    assert "only with resize.lm_head calibrated" in _error(base + ["--calibration-text", str(work["text"])], capsys)
    assert "must be > 0" in _error(base + ["--lm-head", "calibrated", "--calibration-text", str(work["text"]),
                                           "--set", "checkpoints.resize.calibration_prior_std=0"], capsys)
    assert not (tmp_path / "out").exists()
    # The calibration text is an input like the others: never an output, --overwrite or not.
    onto = ["--model", str(work["model"]), "--tokenizer", str(work["merged"]), "--output", str(work["text"]),
            "--lm-head", "calibrated", "--calibration-text", str(work["text"]), "--overwrite"]
    assert "--calibration-text" in _error(onto, capsys)
    assert work["text"].is_file() and work["text"].stat().st_size > 0


def test_untie_on_an_untied_base_changes_nothing(work, tmp_path, capsys):
    config = tiny_llama_config(vocab_size=32000, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                               num_attention_heads=2)
    model = write_tiny_llama(tmp_path / "untied", config)
    shutil.copy(LLAMA2_TOKENIZER, model / "tokenizer.model")
    assert main(["--model", str(model), "--tokenizer", str(work["merged"]), "--output", str(tmp_path / "a"), "--untie"]) == 0
    assert main(["--model", str(model), "--tokenizer", str(work["merged"]), "--output", str(tmp_path / "b")]) == 0
    assert "LM head of its own" not in capsys.readouterr().out
    a, b = HFCheckpoint(tmp_path / "a"), HFCheckpoint(tmp_path / "b")
    assert all(torch.equal(a.read(name), b.read(name)) for name in b.tensors)
    assert json.loads((tmp_path / "a" / "resize_report.json").read_text())["untied"] is False


def test_the_calibration_text_may_be_jsonl_or_a_corpus_output(tmp_path):
    from checkpoints.lm_head_calibration import read_calibration_documents
    from corpus.shards import write_texts_as_corpus
    from stagekit.errors import BadInput

    texts = ["첫 번째 문서입니다.", "두 번째 문서", "세 번째"]
    write_texts_as_corpus(tmp_path / "corpus", texts, 2, "test")
    assert sorted(read_calibration_documents(tmp_path / "corpus")) == sorted(texts)
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts))
    assert read_calibration_documents(tmp_path / "docs.jsonl") == texts
    (tmp_path / "plain").mkdir()
    with pytest.raises(BadInput) as refused:  # a folder that is not a corpus output: one line, naming it
        read_calibration_documents(tmp_path / "plain")
    assert str(tmp_path / "plain") in str(refused.value) and "\n" not in str(refused.value)
