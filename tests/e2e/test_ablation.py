"""benchmarks/ablation.py: the `--quick` run end to end on the real Llama-2 tokenizer and real text (its
JSON, seeds, spreads, the stand-in that knows Korean), the stand-in cache, and the steps-to-target rule."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from benchmarks.ablation_report import spread, steps_to_reach
from stagekit.paths import REPO

ABLATION = ["-m", "benchmarks.ablation"]  # run from the repository root
VARIANTS = ("no-expansion", "random", "mean", "hf-default", "fvt", "fvt+embeddings-stage", "fvt+new-rows-stage")


def numbers(payload):
    """Every float and int in a JSON payload (bools excluded)."""
    if isinstance(payload, bool):
        return
    if isinstance(payload, (int, float)):
        yield payload
    elif isinstance(payload, dict):
        for value in payload.values():
            yield from numbers(value)
    elif isinstance(payload, list):
        for value in payload:
            yield from numbers(value)


@pytest.mark.slow
def test_quick_run_reports_every_variant_with_seeds_and_spreads(tmp_path, shared_data):
    out = tmp_path / "ablation.json"
    result = subprocess.run([sys.executable, *ABLATION, "--quick", "--cache-dir", str(tmp_path / "cache"),
                             "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert all(math.isfinite(x) for x in numbers(report))
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The stand-in saw a little Korean (KorNLI/KorSTS dev text): clearly better on Korean than its twin.
    standin, twin = report["standins"]["standin"], report["standins"]["no-korean"]
    assert standin["korean_share"] > 0 and twin["korean_share"] == 0
    assert standin["ko_bpc"] < twin["ko_bpc"] - 1.0, (standin, twin)

    seeds = report["settings"]["seeds"]
    assert seeds == 3
    main = report["summary"][f"{report['settings']['replay']:g}"]
    assert set(main["variants"]) == set(VARIANTS)
    for name in VARIANTS:
        runs = report["runs"][f"{report['settings']['replay']:g}"][name]["seeds"]
        assert len(runs) == seeds
        for run in runs.values():
            assert [p["step"] for p in run["curve"]][0] == 0 and run["curve"][-1]["step"] == run["steps"]
        row = main["variants"][name]
        for metric in ("ko_bpc_0", "ko_bpc_end", "en_bpc_0", "en_bpc_end", "ko_tokens_per_char"):
            assert row[metric]["n"] == seeds and row[metric]["sd"] is not None and row[metric]["sd"] >= 0
            assert row[metric]["min"] - 1e-9 <= row[metric]["mean"] <= row[metric]["max"] + 1e-9  # fmean rounds
        assert 0 <= row["seeds_reaching_target"] <= seeds
    rows = main["variants"]
    # Equal FLOPs: a larger LM head gets fewer steps; the merged tokenizer spends fewer tokens per character.
    assert rows["fvt"]["steps"] <= rows["no-expansion"]["steps"]
    assert abs(rows["fvt"]["train_flops"] / rows["no-expansion"]["train_flops"] - 1) < 0.2
    assert rows["fvt"]["ko_tokens_per_char"]["mean"] < rows["no-expansion"]["ko_tokens_per_char"]["mean"] * 0.8
    # Random init differs per seed; the staged variants' first stage really ran.
    assert rows["random"]["ko_bpc_0"]["sd"] > 0
    assert next(iter(report["runs"]["0.05"]["fvt+new-rows-stage"]["seeds"].values()))["stage1_steps"] > 0
    assert "| 5% | fvt+new-rows-stage |" in result.stdout and "±" in result.stdout


@pytest.mark.slow
def test_the_stand_in_is_cached_by_its_settings(tmp_path, shared_data):
    from benchmarks.ablation_standin import (ModelShape, StandinSettings, base_tokenizer_dir, hf_tokenizer,
                                             pretrain_standin)

    tokenizer = hf_tokenizer(base_tokenizer_dir(tmp_path))
    settings = StandinSettings(ModelShape(hidden=16, layers=1, heads=2, seq=16, batch=2), steps=2, korean_share=0.5)
    first, record = pretrain_standin(tmp_path, settings, tokenizer, log=lambda *_: None)
    assert not record["cached"] and (first / "config.json").is_file()
    again, record = pretrain_standin(tmp_path, settings, tokenizer, log=lambda *_: None)
    assert again == first and record["cached"]
    other, record = pretrain_standin(tmp_path, StandinSettings(settings.shape, steps=2, korean_share=0.0), tokenizer,
                                     log=lambda *_: None)
    assert other != first and not record["cached"]
    assert not list(tmp_path.glob("*.tmp"))


def test_steps_to_target_interpolates_between_evaluations():
    curve = [{"step": 0, "ko_bpc": 10.0}, {"step": 10, "ko_bpc": 8.0}, {"step": 20, "ko_bpc": 6.0}]
    assert steps_to_reach(curve, 7.0) == pytest.approx(15.0)
    assert steps_to_reach(curve, 11.0) == 0.0
    assert steps_to_reach(curve, 5.0) is None
    assert spread([1.0, 3.0]) == {"mean": 2.0, "sd": pytest.approx(math.sqrt(2)), "min": 1.0, "max": 3.0, "n": 2}
