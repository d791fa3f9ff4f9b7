"""`bash pretrain/launch.sh configs/demo.yaml` without SLURM (2 CPU processes, TP=2), and `kocpt plan`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stagekit.paths import LLAMA2_TOKENIZER, REPO
from tests.support.pretrain import metrics, tokenized_corpus

# The `kocpt` console script of the environment running the tests (make's .venv or any other).
KOCPT = str(Path(sys.executable).parent / "kocpt")


def repo_without_venv(tmp_path: Path) -> Path:
    """The repository as a cluster user has it: no .venv inside (links to everything else)."""
    view = tmp_path / "repo"
    view.mkdir()
    for entry in REPO.iterdir():
        if entry.name != ".venv":
            (view / entry.name).symlink_to(entry)
    return view


@pytest.mark.slow
def test_launch_sh_runs_the_demo_config_locally(tmp_path_factory, tmp_path):
    data_dir = tokenized_corpus(tmp_path_factory)[0]
    run_dir = tmp_path / "run"
    # An activated environment (python3 on PATH) and a repository without .venv: the usual cluster setup.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KOCPT_STOP_FILE": str(tmp_path / "stop"),
           "KOCPT_REPO": str(repo_without_venv(tmp_path)),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("KOCPT_PYTHON", None)
    result = subprocess.run(
        ["bash", "pretrain/launch.sh", "configs/demo.yaml",
         f"--set=tokenizer={LLAMA2_TOKENIZER}", "--set=init=random", f"--set=data.blend.0.path={data_dir}",
         f"--set=checkpoint.dir={run_dir}", "--set=model.base_vocab_size=31000",
         "--set=stages.0.steps=2", "--set=stages.1.steps=3", "--set=eval.interval=0"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "no SLURM job: running 2 process(es)" in result.stdout
    assert "world_size=2 tensor=2 pipeline=1 data=1" in result.stdout
    records = metrics(run_dir)
    assert sorted(records) == [1, 2, 3, 4, 5]
    assert [records[s]["stage"] for s in (1, 2, 3)] == [0, 0, 1]
    assert "val_bpc" in records[5]
    assert (run_dir / "latest").read_text().strip() == "iter_0000005"


@pytest.mark.slow
def test_launch_sh_fails_loudly(tmp_path):
    result = subprocess.run(["bash", "pretrain/launch.sh", str(tmp_path / "missing.yaml")], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "missing.yaml: no such config file" in result.stderr


@pytest.mark.slow
def test_launch_sh_names_the_python_it_tried(tmp_path):
    """A Python without the project (here: one that cannot import anything) -> one line, exit 2."""
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    env = {**os.environ, "KOCPT_PYTHON": str(fake)}
    result = subprocess.run(["bash", "pretrain/launch.sh", "configs/demo.yaml"], cwd=REPO,
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(fake) in lines[0] and "KOCPT_PYTHON" in lines[0]
    # Without KOCPT_PYTHON and without .venv, python3 on PATH is tried (here: the fake one).
    env = {**os.environ, "KOCPT_REPO": str(repo_without_venv(tmp_path)), "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    env.pop("KOCPT_PYTHON", None)
    result = subprocess.run(["bash", "pretrain/launch.sh", "configs/demo.yaml"], cwd=REPO,
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2 and str(fake) in result.stderr


@pytest.mark.slow
def test_plan_for_the_7b_recipe(tmp_path):
    out = tmp_path / "plan.json"
    result = subprocess.run([KOCPT, "plan", "configs/llama2-7b.yaml", "--json", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    plan = json.loads(out.read_text())
    assert 6.7e9 < plan["model"]["parameters"] < 7.0e9  # Llama-2-7B + ~14k Korean rows
    memory = plan["memory_gib_per_gpu"]
    assert memory["fits"] and 40 < memory["total"] < 80
    assert abs(plan["anchor"]["meta_llama2_7b_tokens_per_s_per_gpu"] - 3014) < 1
    assert 0.9 < plan["anchor"]["ours_vs_meta"] < 1.1
    assert "Meta's Llama-2-7B: 3,014 tokens/s per A100" in result.stdout
    # The same recipe with 4x the micro batch and no recomputation does not fit: the plan says so.
    result = subprocess.run([KOCPT, "plan", "configs/llama2-7b.yaml",
                             "--set=micro_batch_size=4", "--set=global_batch_size=256"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "DOES NOT FIT" in result.stdout
