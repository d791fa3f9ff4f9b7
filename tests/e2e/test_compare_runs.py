"""`kocpt compare` run as users run it: two arms of the demo's tiny model at equal training FLOPs, a killed run
resumed, and a rerun that has nothing to do."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stagekit.paths import REPO

KOCPT = str(Path(sys.executable).parent / "kocpt")


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
