"""Running the conversion commands as users do (a process each; verify under torchrun with 2 ranks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from stagekit.paths import REPO

PYTHON = sys.executable
TOLERANCE = 1e-4  # logits of HF and Megatron agree to this (fp32)


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([PYTHON, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def verify(hf: Path, megatron: Path | None, layouts: str, out: Path) -> list[dict]:
    args = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "checkpoints.verify",
            "--hf", str(hf), "--layouts", layouts, "--json", str(out)]
    if megatron is not None:
        args += ["--megatron", str(megatron)]
    run(*args)
    return json.loads(out.read_text())
