"""benchmarks/gpu.py: its CPU half runs here (real Megatron-Core processes), so the command that
proves the CUDA path cannot rot between GPU reservations."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from stagekit.paths import REPO

GPU_BENCHMARK = ["-m", "benchmarks.gpu"]  # run from the repository root


@pytest.mark.slow
def test_cpu_half_trains_checkpoints_resumes_and_writes_json(tmp_path):
    out = tmp_path / "results" / "gpu.json"
    command = [sys.executable, *GPU_BENCHMARK, "--output", str(out)]
    if torch.cuda.is_available():  # the CPU half only: the whole run is for a reserved GPU
        command.append("--cpu-only")
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    if not torch.cuda.is_available():
        assert "the GPU half needs CUDA" in result.stdout
    report = json.loads(out.read_text())
    assert report["device"]["type"] == "cpu" and report["throughput"] == []
    assert report["correctness"]["gpu"] is None
    assert report["versions"]["megatron-core"]
    fp32 = report["correctness"]["cpu"]["runs"]["fp32"]
    assert fp32["dtype"] == "float32" and fp32["spec"] == "local"
    losses = fp32["losses"]
    assert len(losses) == 5 and all(math.isfinite(loss) for loss in losses)
    assert abs(losses[0] - math.log(4000)) < 0.1  # a fresh model: uniform over the 4,000 ids
    assert min(losses) < losses[0] - 0.4  # it learns the successor table
    resume = fp32["resume"]
    assert resume["bit_identical"] and resume["resumed_losses"] == losses[2:]
    assert {c["name"] for c in report["checks"]} >= {"CPU fp32: checkpoint, reload, 3 steps bit-identical"}
    assert all(c["passed"] for c in report["checks"])
    assert "[ok] CPU fp32: checkpoint, reload, 3 steps bit-identical" in result.stdout
    assert not out.with_name("gpu.json.tmp").exists()


@pytest.mark.slow
def test_missing_megatron_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "gpu.json"
    code = ("import runpy, sys; sys.modules['megatron'] = None; "  # as on a node without megatron-core
            f"sys.argv = ['gpu.py', '--output', {str(out)!r}]; runpy.run_module('benchmarks.gpu', run_name='__main__', alter_sys=True)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "megatron-core is not importable" in result.stderr
    assert "gpu_wheels.sh" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_bad_option_is_refused(tmp_path):
    result = subprocess.run([sys.executable, *GPU_BENCHMARK, "--sizes", "13b", "--output", str(tmp_path / "x.json")],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "unknown size(s) 13b" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    ([], "usage: bash benchmarks/gpu_wheels.sh DIR"),
    (["DIR", "--python", "3"], "--python wants X.Y, got 3"),
    (["DIR", "--bogus"], "unknown option --bogus"),
    (["A", "B"], "one DIR only (got A and B)"),
])
def test_gpu_wheels_refuses_bad_arguments_before_downloading(tmp_path, args, message):
    result = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_wheels.sh"), *args], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr
    assert not any(tmp_path.iterdir())
