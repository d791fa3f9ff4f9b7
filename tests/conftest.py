"""Shared test fixtures: paths to the real data in ../shared/data and the repo's own test data."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagekit.paths import DEMO_CORPUS, LLAMA2_TOKENIZER, REPO, SHARED_DATA  # noqa: F401  (shared test paths)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"{SHARED_DATA} is missing: tests need ../shared/data beside the repository")
    return SHARED_DATA
