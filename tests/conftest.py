"""Shared test fixtures: paths to the real data in ../shared/data and the repo's own test data; the
offline switch; the fast tier's guard.

Tiers: a test not marked `slow` is in the fast tier (`make test-fast`, `pytest -m "not slow"`), which
is hermetic: no subprocess (so no Beam job, Megatron process, llama.cpp build or pip download) and
no network. `slow` tests are the integration and end-to-end tiers; `network` marks the few that may
fetch a pinned wheel from PyPI when it is not cached. `make test` (CI) runs every tier.
"""

from __future__ import annotations

import multiprocessing.process
import os
import subprocess
from pathlib import Path

import pytest

# No hub access anywhere (set before transformers/datasets/lm-eval are imported by any test module).
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_name] = "1"

from stagekit.paths import DEMO_CORPUS, LLAMA2_TOKENIZER, REPO, SHARED_DATA  # noqa: F401  (shared test paths)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"{SHARED_DATA} is missing: tests need ../shared/data beside the repository")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _fast_tier_is_hermetic(request, monkeypatch):
    """A fast-tier test that starts a process fails, naming the fix (a fixture of wider scope is not
    covered: it is set up before this one)."""
    if request.node.get_closest_marker("slow"):
        return

    def refuse(*args, **kwargs):
        raise AssertionError(f"{request.node.nodeid} started a process in the fast tier: mark it @pytest.mark.slow")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", refuse)
