"""`kocpt compare`: two arms of the demo's tiny model at equal training FLOPs, a killed run resumed, a rerun
that has nothing to do, and bad input refused in one line before anything runs."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
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
from stagekit.paths import DEFAULT_CONFIG, REPO

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
    report = build_report(config, "base", budget, shapes, plan, every, [])
    expanded = report["arms"][1]
    assert [gap["step"] for gap in expanded["gaps"]] == [0, *plan["expanded"]]
    assert expanded["gaps"][0]["korean"]["gap"] == pytest.approx(120 / math.log(2) / 420)
    assert expanded["gaps"][0]["english"] == {"gap": 0.0, "se": 0.0}
    assert expanded["inference_cost_ratio"] == pytest.approx((14.5 * 270) / (12.9 * 470))
    assert report["verdict"].startswith("Verdict: expanded vs base") and "(worse)" in report["verdict"]
    assert "over the last 3 points" in report["verdict"] and "| mean | 3 |" in markdown(report)


# ------------------------------------------------------------------------------ fast: bad input, one line


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


@pytest.fixture(scope="module")
def demo_inputs(tmp_path_factory) -> Path:
    """The demo's corpus and merged tokenizer (`kocpt demo --until merge`), as a user would have them."""
    output = tmp_path_factory.mktemp("compare") / "demo"
    result = subprocess.run([KOCPT, "demo", "--output", str(output), "--until", "merge"], capture_output=True, text=True,
                            cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return output


def compare_args(demo: Path, output: Path) -> list[str]:
    """The demo config's comparison on the demo's inputs; one training process (TP=1): the tiny model gains
    nothing from two on two cores, and each launch starts fewer Python processes."""
    return [KOCPT, "compare", "--output", str(output), "--set", f"compare.corpus={demo / 'corpus'}",
            "--set", f"compare.arms.1.tokenizer={demo / 'tokenizer'}", "--set", "pretrain.parallel.tensor=1"]


ONE_PROCESS = {**os.environ, "NPROC_PER_NODE": "1"}


@pytest.mark.slow
def test_compare_killed_mid_arm_resumes_and_reports_both_arms_at_equal_flops(demo_inputs, tmp_path):
    output = demo_inputs.parent / "comparison"
    process = subprocess.Popen(compare_args(demo_inputs, output), cwd=REPO, env=ONE_PROCESS, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 600
    while not (output / "arms" / "base" / "points" / "20.json").is_file():  # killed while training to step 40
        assert process.poll() is None and time.time() < deadline, process.stdout.read()
        time.sleep(0.2)
    time.sleep(3)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    process.stdout.close()

    started = time.time()
    result = subprocess.run(compare_args(demo_inputs, output), capture_output=True, text=True, cwd=REPO, env=ONE_PROCESS, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "[base] point 0/2 (step 0) up to date" in result.stdout and "[base] point 1/2 (step 20) up to date" in result.stdout
    assert "resumed from" in (output / "arms" / "base" / "logs" / "pretrain-40.log").read_text()
    print(f"rerun after the kill: {time.time() - started:.0f}s")

    report = json.loads((output / "compare.json").read_text())
    base, expanded = report["arms"]
    assert [base["name"], expanded["name"]] == ["base", "expanded"] and report["reference"] == "base"
    assert [point["step"] for point in base["points"]] == [0, 20, 40]
    assert expanded["points"][-1]["step"] < 40  # its bigger LM head costs more per token
    for index, (ours, theirs) in enumerate(zip(expanded["points"], base["points"])):
        step_flops = max(arm["shape"]["flops_per_token"] * arm["shape"]["tokens_per_step"] for arm in (base, expanded))
        assert abs(ours["training_flops"] - theirs["training_flops"]) <= step_flops, index
    for arm in (base, expanded):
        for point in arm["points"]:
            for language in ("korean", "english"):
                assert point[language]["documents"] >= 200 and 0 < point[language]["se"] < 0.5
        # Training from a random tiny model: Korean bits/char falls a long way.
        assert arm["points"][-1]["korean"]["bits_per_char"] < arm["points"][0]["korean"]["bits_per_char"] - 1
        assert arm["points"][-1]["korean_characters"] > 0
    assert expanded["points"][-1]["korean_characters"] > base["points"][-1]["korean_characters"]  # more Korean a token
    assert expanded["inference_cost_ratio"] < 1 and base["inference_cost_ratio"] == 1
    assert all(gap["korean"]["se"] > 0 for gap in expanded["gaps"])
    assert report["verdict"].startswith("Verdict: expanded vs base") and report["verdict"] in result.stdout
    assert "± " in report["verdict"] and "per tenfold tokens" in report["verdict"] and "x the FLOPs per Korean" in report["verdict"]
    markdown = (output / "compare.md").read_text()
    assert report["verdict"] in markdown
    assert (output / "bits_per_char.png").stat().st_size > 1000 and (output / "inference_cost.png").stat().st_size > 1000


@pytest.mark.slow
def test_compare_rerun_reuses_every_finished_arm(demo_inputs):
    output = demo_inputs.parent / "comparison"
    if not (output / "compare.json").is_file():
        pytest.fail("needs the comparison of the test before it (run the module)")
    before = (output / "compare.json").read_text()
    result = subprocess.run(compare_args(demo_inputs, output), capture_output=True, text=True, cwd=REPO, env=ONE_PROCESS, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("up to date") == 6 and "done in" not in result.stdout
    assert (output / "compare.json").read_text() == before
    # Other settings on the same output: refused (its checkpoints belong to the first), one line.
    changed = subprocess.run([*compare_args(demo_inputs, output), "--set", "pretrain.optimizer.lr=1e-3"],
                             capture_output=True, text=True, cwd=REPO, env=ONE_PROCESS, timeout=300)
    assert changed.returncode == 2 and "was run with other settings" in changed.stderr
    assert changed.stderr.count("\n") == 1 and (output / "compare.json").read_text() == before
