"""The one table of run-config sections (stagekit.config.SECTION_CLASSES) and the whole-file check built on it."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from checkpoints.config import load_checkpoints_config
from corpus.config import load_corpus_config
from evaluation.config import load_eval_config
from pretrain.config import load_config
from stagekit.config import SECTION_CLASSES, SECTIONS, check_run_config, load_section, section_class
from stagekit.errors import BadInput
from stagekit.paths import REPO
from tokenizer.config import TokenizerConfig

SHIPPED = sorted((REPO / "configs").glob("*.yaml"))


def test_the_table_names_every_section_once_and_each_class_is_a_dataclass():
    assert SECTIONS == tuple(SECTION_CLASSES)
    assert all(dataclasses.is_dataclass(section_class(name)) for name in SECTIONS)


def test_each_stage_loads_its_section_as_the_class_of_the_table():
    """The table is not a second list: what a stage returns is the class the table names."""
    loaded = {
        "corpus": load_corpus_config(None),
        "checkpoints": load_checkpoints_config(None),
        "eval": load_eval_config(None),
        "tokenizer": load_section(TokenizerConfig, "tokenizer"),
        "pretrain": load_config(REPO / "configs" / "demo.yaml", []).pretrain,
        "model": load_config(REPO / "configs" / "demo.yaml", []).model,
    }
    assert {name: type(value) for name, value in loaded.items()} == {name: section_class(name) for name in loaded}


@pytest.mark.parametrize("config", SHIPPED, ids=lambda path: path.name)
def test_the_shipped_configs_pass_the_whole_file_check(config):
    document = yaml.safe_load(config.read_text())
    assert check_run_config(config) == list(document)


@pytest.mark.parametrize(("section", "body", "message"), [
    ("cluster", {"gpus_per_nodes": 8}, "cluster: unknown key(s) gpus_per_nodes"),
    ("eval", {"korean": 3}, "eval.korean: expected"),
    ("tokenize", {"add_bos": "maybe"}, "tokenize.add_bos: expected true or false"),
    ("checkpoints", {"resize": {"seeed": 1}}, "checkpoints.resize: unknown key(s) seeed"),
])
def test_a_typo_in_any_section_is_one_line(tmp_path, section, body, message):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({section: body}))
    with pytest.raises(BadInput) as caught:
        check_run_config(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_overrides_are_typed_too_even_for_a_section_the_file_lacks(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"corpus": {}}))
    assert check_run_config(path, ["eval.limit=3"]) == ["corpus", "eval"]
    with pytest.raises(BadInput, match=r"eval: unknown key\(s\) limitt"):
        check_run_config(path, ["eval.limitt=3"])
