"""`kocpt demo`, the README's first command: every stage end to end, and a rerun after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stagekit.paths import LLAMA2_TOKENIZER, REPO

pytestmark = pytest.mark.slow
KOCPT = str(Path(sys.executable).parent / "kocpt")
STAGES = ["corpus", "sp-train", "merge", "base-model", "resize", "convert", "tokenize", "pretrain", "export", "eval"]


def demo(output: Path, *extra: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([KOCPT, "demo", "--output", str(output), *extra], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)


def korean_tokens_per_char(output: Path) -> tuple[float, float]:
    report = json.loads((output / "tokenizer" / "report.json").read_text())
    (figures,) = report["korean"].values()
    return figures["base"]["tokens_per_char"], figures["merged"]["tokens_per_char"]


def training_losses(output: Path) -> list[float]:
    lines = (output / "pretrain" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if '"loss"' in line]


def check_outputs(output: Path) -> dict:
    assert all((output / ".stamps" / f"{stage}.json").is_file() for stage in STAGES)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(output / "final")
    tokenizer = AutoTokenizer.from_pretrained(output / "final")
    assert model.config.vocab_size == len(tokenizer)
    # The rows kept from the base travel from resize's report through convert into the run (no typed number).
    kept = json.loads((output / "resized" / "resize_report.json").read_text())["base_vocab_size"]
    for folder in ("megatron-init", "pretrain"):
        assert json.loads((output / folder / "kocpt_model.json").read_text())["base_vocab_size"] == kept
    evaluation = json.loads((output / "eval" / "eval.json").read_text())
    assert (output / "eval" / "eval.md").is_file() and list((output / "eval").glob("*.png"))
    losses = training_losses(output)
    assert len(losses) == 60 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5  # training loss falls
    # The trained model writes Hangul (sampled, seeded): at least a third of its letters are syllables.
    trained = next(model for model in evaluation["models"] if model["label"] == "trained")
    for sample in trained["generation"]:
        letters = [ch for ch in sample["completion"] if ch.isalpha()]
        assert letters and sum("\uac00" <= ch <= "\ud7a3" for ch in letters) >= len(letters) / 3, sample
    return evaluation


def test_demo_with_the_stand_in_base_tokenizer(tmp_path):
    output = tmp_path / "demo"
    result = demo(output)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "standing in for Llama-2" in result.stdout
    assert all(f"{stage}" in result.stdout for stage in STAGES)
    check_outputs(output)
    before, after = korean_tokens_per_char(output)
    # Mistral's vocabulary already holds more Hangul than Llama-2's (1.12 vs 1.48 tokens/char).
    assert after < 0.6 * before


def test_demo_with_llama2_continues_after_a_kill(tmp_path):
    output = tmp_path / "demo"
    args = [KOCPT, "demo", "--output", str(output), "--base-tokenizer", str(LLAMA2_TOKENIZER)]
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    deadline = time.time() + 600
    while not (output / ".stamps" / "convert.json").is_file():  # killed inside the tokenize stage
        assert process.poll() is None and time.time() < deadline, process.stdout.read()
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    process.stdout.close()

    result = demo(output, "--base-tokenizer", str(LLAMA2_TOKENIZER))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for stage in STAGES[:6]:
        assert f"{stage:<10} up to date" in result.stdout
    assert f"{'tokenize':<10} ..." in result.stdout
    check_outputs(output)
    before, after = korean_tokens_per_char(output)
    assert before == pytest.approx(1.481, abs=0.01) and after < before / 2
    # Meta's license travels with every derivative of the Llama-2 tokenizer.
    assert (output / "tokenizer" / "LICENSE").is_file() and (output / "final" / "LICENSE").is_file()
    # A third run has nothing to do.
    again = demo(output, "--base-tokenizer", str(LLAMA2_TOKENIZER))
    assert again.returncode == 0 and again.stdout.count("up to date") == len(STAGES)
