"""Shared test fixtures: paths to the real data in ../shared/data and the repo's own test data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DEMO_CORPUS = REPO / "tests" / "data" / "demo_corpus"
LLAMA2_TOKENIZER = SHARED_DATA / "llama2-tokenizer" / "tokenizer.model"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"{SHARED_DATA} is missing: tests need ../shared/data beside the repository")
    return SHARED_DATA
