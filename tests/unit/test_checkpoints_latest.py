"""`convert --to hf` on a training run directory follows its `latest` pointer."""

from __future__ import annotations

import pytest

from mcore_llama.run_dir import resolve_checkpoint as resolve_latest
from stagekit.errors import BadInput


def test_run_directory_resolves_to_its_latest_checkpoint(tmp_path):
    (tmp_path / "iter_0000010").mkdir()
    (tmp_path / "iter_0000020").mkdir()
    (tmp_path / "latest").write_text("iter_0000020\n")
    assert resolve_latest(tmp_path) == tmp_path / "iter_0000020"
    # A checkpoint directory itself is used as it is.
    (tmp_path / "iter_0000020" / "metadata.json").write_text("{}")
    assert resolve_latest(tmp_path / "iter_0000020") == tmp_path / "iter_0000020"


def test_dangling_latest_pointer_is_one_clear_error(tmp_path):
    (tmp_path / "latest").write_text("iter_0000099")
    with pytest.raises(BadInput, match="iter_0000099, which does not exist"):
        resolve_latest(tmp_path)
