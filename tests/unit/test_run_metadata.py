"""kocpt_model.json carries what the model's artifacts say (here: the rows it kept from its base), and a
resized HF directory says it in its resize_report.json."""

from __future__ import annotations

import json

import pytest
import torch

from mcore_llama.hf_checkpoint import resized_base_rows
from mcore_llama.run_dir import ModelMetadata, read_model_metadata, write_model_metadata
from mcore_llama.shape import LlamaShape
from stagekit.errors import BadInput

SHAPE = LlamaShape(vocab_size=1200, hidden_size=64, intermediate_size=172, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=4)


def test_base_vocab_size_round_trips_and_older_metadata_reads_as_none(tmp_path):
    write_model_metadata(tmp_path, ModelMetadata(shape=SHAPE, dtype=torch.float32, padded_vocab_size=1280,
                                                 base_vocab_size=1000))
    assert read_model_metadata(tmp_path).base_vocab_size == 1000
    raw = json.loads((tmp_path / "kocpt_model.json").read_text())
    del raw["base_vocab_size"]  # written before the field existed
    (tmp_path / "kocpt_model.json").write_text(json.dumps(raw))
    assert read_model_metadata(tmp_path).base_vocab_size is None


def test_base_rows_beyond_the_vocabulary_are_refused(tmp_path):
    with pytest.raises(BadInput, match="base_vocab_size 1300 outside 1..vocab_size 1200"):
        write_model_metadata(tmp_path, ModelMetadata(shape=SHAPE, dtype=torch.float32, padded_vocab_size=1280,
                                                     base_vocab_size=1300))


@pytest.mark.parametrize(("report", "rows"), [
    ({"old_vocab_size": 1000, "base_vocab_size": 900}, 900),  # Qwen-like: spare rows past the base ids
    ({"old_vocab_size": 1000}, 1000),  # a report written before base_vocab_size: every old row was kept
])
def test_a_resized_directory_says_how_many_rows_it_kept(tmp_path, report, rows):
    assert resized_base_rows(tmp_path) is None  # not resized here
    (tmp_path / "resize_report.json").write_text(json.dumps(report))
    assert resized_base_rows(tmp_path) == rows


def test_a_malformed_resize_report_is_one_line(tmp_path):
    (tmp_path / "resize_report.json").write_text("[1, 2")
    with pytest.raises(BadInput, match="resize_report.json: malformed"):
        resized_base_rows(tmp_path)
