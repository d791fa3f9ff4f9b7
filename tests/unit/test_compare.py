"""`kocpt compare` in this process: the equal-FLOPs plan, the gap trend, the report of three arms, and bad input
refused in one line before anything runs (the runs themselves: tests/e2e/test_compare_runs.py)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import yaml

from kocpt.compare import equal_flops_plan, main as compare_main
from kocpt.compare_arm import ArmShape
from kocpt.compare_config import CompareSection
from kocpt.compare_report import gap_trend
from stagekit.config import load_section
from stagekit.entry import run_main
from stagekit.errors import BadInput
from stagekit.paths import DEFAULT_CONFIG

KOCPT = str(Path(sys.executable).parent / "kocpt")


def shape(flops_per_token: float) -> ArmShape:
    return ArmShape(flops_per_token=flops_per_token, tokens_per_step=512, vocab_rows=0, forward_flops_per_token=flops_per_token / 3,
                    characters_per_token=1.0)


def section(**compare) -> CompareSection:
    return CompareSection(**{"budget_tokens": 20480, "points": 2, **compare})


# ------------------------------------------------------------------------------ fast: the plan and the trend


def test_a_bigger_lm_head_gets_fewer_steps_for_the_same_flops():
    shapes = {"base": shape(12.9e6), "expanded": shape(14.5e6)}
    budget, plan = equal_flops_plan(section(), shapes, "base")
    assert plan["base"] == [20, 40] and budget == 40 * 512 * 12.9e6
    assert plan["expanded"] == [round(20 * 12.9 / 14.5), round(40 * 12.9 / 14.5)] == [18, 36]
    for name, steps in plan.items():  # equal FLOPs within half a step's FLOPs at every point
        step_flops = shapes[name].flops_per_token * 512
        for share, step in zip(section().point_fractions(), steps):
            assert abs(step * step_flops - share * budget) <= step_flops / 2


def test_a_budget_too_small_for_its_points_is_refused():
    with pytest.raises(BadInput, match=r"arm base steps \[0, 0, 1\]"):
        equal_flops_plan(section(budget_tokens=512, points=3), {"base": shape(1e6), "other": shape(1e6)}, "base")


def test_the_gap_trend_is_the_slope_per_tenfold_tokens_over_the_last_points():
    gaps = [{"reference_tokens": tokens, "korean": {"gap": gap}}
            for tokens, gap in ((0, 1.3), (1e3, 0.9), (1e4, 0.7), (1e5, 0.5), (1e6, 0.3))]
    assert gap_trend(gaps) == pytest.approx(-0.2)
    assert gap_trend(gaps[:2]) is None  # one trained point: no trend


def test_the_report_pairs_every_arm_with_the_reference_at_equal_flops():
    from evaluation.bpc import BpcResult
    from kocpt.compare_config import ArmSection
    from kocpt.compare_report import build_report, markdown

    def scores(korean_nll: list[float], tokens: int) -> dict:
        chars = [100, 120, 90, 110]
        result = lambda nll: BpcResult(name="x", documents=4, characters=sum(chars), bytes=3 * sum(chars), tokens=tokens,
                                       nll_nats=sum(nll), context=256, stride=255, doc_nll_nats=nll, doc_characters=chars)
        return {"korean": result(korean_nll).to_dict(), "english": result([50.0, 60.0, 45.0, 55.0]).to_dict()}

    arms = [ArmSection(name="base"), ArmSection(name="expanded", tokenizer="t"), ArmSection(name="mean", tokenizer="t", init="mean")]
    shapes = {"base": shape(12.9e6), "expanded": shape(14.5e6), "mean": shape(14.5e6)}
    config = section(arms=arms, points=3)
    budget, plan = equal_flops_plan(config, shapes, "base")
    nll = {"base": [300.0, 350.0, 280.0, 320.0], "expanded": [330.0, 390.0, 300.0, 350.0], "mean": [340.0, 400.0, 310.0, 360.0]}
    tokens = {"base": 470, "expanded": 270, "mean": 270}
    every = {name: {step: scores([value - step for value in nll[name]], tokens[name]) for step in [0, *plan[name]]}
             for name in nll}
    report = build_report(config, "base", budget, shapes, plan, every, [], start_flops={"expanded": budget / 8})
    expanded = report["arms"][1]
    # A calibrated LM head's forward pass is reported beside the budget, not taken from it.
    assert expanded["start_flops"] == budget / 8 and report["arms"][2]["start_flops"] == 0.0
    assert "expanded's starting rows cost" in markdown(report) and "12.5% of the training budget" in markdown(report)
    assert [gap["step"] for gap in expanded["gaps"]] == [0, *plan["expanded"]]
    assert expanded["gaps"][0]["korean"]["gap"] == pytest.approx(120 / math.log(2) / 420)
    assert expanded["gaps"][0]["english"] == {"gap": 0.0, "se": 0.0}
    assert expanded["inference_cost_ratio"] == pytest.approx((14.5 * 270) / (12.9 * 470))
    assert report["verdict"].startswith("Verdict: expanded vs base") and "(worse)" in report["verdict"]
    assert "over the last 3 points" in report["verdict"] and "| mean | 3 |" in markdown(report)


# ------------------------------------------------------------------------------ fast: bad input, one line



def test_an_arms_start_flops_are_its_fits_from_the_resize_report(tmp_path):
    """Resize's LM-head calibration forward pass and input-row distillation, summed; the base arm spent none."""
    import json

    from kocpt.compare_arm import Arm
    from kocpt.compare_config import ArmSection

    def arm(section: ArmSection) -> Arm:
        return Arm(section, tmp_path / section.name, tmp_path / "config.yaml", [], tmp_path / "base-model",
                   tmp_path / "base-tokenizer", tmp_path / "corpus", [], say=print)

    expanded = arm(ArmSection(name="expanded", tokenizer="tok"))
    assert expanded.start_flops() == 0.0  # not resized yet
    expanded.initial_model.mkdir(parents=True)
    (expanded.initial_model / "resize_report.json").write_text(json.dumps(
        {"calibration": {"forward_flops": 2.5e12}, "distillation": {"flops": 1.5e13}}))
    assert expanded.start_flops() == 1.75e13
    (expanded.initial_model / "resize_report.json").write_text(json.dumps({"calibration": None, "distillation": None}))
    assert expanded.start_flops() == 0.0
    assert arm(ArmSection(name="base")).start_flops() == 0.0

def run_compare(capsys, *argv: str) -> tuple[int, str]:
    code = run_main(compare_main, list(argv), prog="kocpt compare")
    return code, capsys.readouterr().err


def config_with(tmp_path: Path, **compare) -> Path:
    document = yaml.safe_load(DEFAULT_CONFIG.read_text())
    document["compare"] = {**document["compare"], **compare}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    return path


@pytest.mark.parametrize(("compare", "message"), [
    ({"budget_tokens": None}, "compare: set budget_tokens"),
    ({"budget_flops": 1e12}, "compare: set budget_tokens (the reference arm's training tokens) or budget_flops, one of them"),
    ({"arms": [{"name": "base"}]}, "a comparison needs 2 or more arms"),
    ({"arms": [{"name": "a"}, {"name": "a", "tokenizer": "x"}]}, "arms.1.name 'a': an earlier arm has this name"),
    ({"arms": [{"name": "a/b"}, {"name": "c"}]}, "arms.0.name 'a/b'"),
    ({"arms": [{"name": "a", "init": "fvt"}, {"name": "c"}]}, "init and lm_head need a tokenizer"),
    ({"arms": [{"name": "a", "set": ["eval.limit=3"]}, {"name": "c"}]}, "an arm may set pretrain, model, checkpoints, tokenize only"),
    ({"points": 0}, "points must be >= 1"),
    ({"budget_tokenz": 3}, "compare: unknown key(s) budget_tokenz"),
    ({"corpus": "no/such/corpus"}, "compare.corpus:"),
])
def test_bad_settings_are_one_line(tmp_path, capsys, compare, message):
    code, err = run_compare(capsys, "--config", str(config_with(tmp_path, **compare)), "--output", str(tmp_path / "out"))
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_an_output_inside_an_input_or_someone_elses_folder_is_refused(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    config = config_with(tmp_path, corpus=str(corpus), arms=[{"name": "base"}, {"name": "expanded", "tokenizer": str(tmp_path)}])
    code, err = run_compare(capsys, "--config", str(config), "--output", str(corpus / "out"))
    assert code == 2 and "lies inside compare.corpus" in err and err.count("\n") == 1, err
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    config = config_with(tmp_path, corpus=str(corpus), arms=[{"name": "base"}, {"name": "expanded", "tokenizer": str(corpus)}])
    code, err = run_compare(capsys, "--config", str(config), "--output", str(foreign))
    assert code == 2 and "was not written by kocpt compare" in err, err
    assert [path.name for path in foreign.iterdir()] == ["notes.txt"]


def test_the_shipped_demo_section_loads():
    loaded = load_section(CompareSection, "compare", DEFAULT_CONFIG)
    assert [arm.name for arm in loaded.arms] == ["base", "expanded"] and loaded.reference_arm.name == "base"
    assert loaded.documents >= 200


# ------------------------------------------------------------------------------ slow: the real comparison
