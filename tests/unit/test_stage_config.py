"""The one config loader (stagekit.config): sections, unknown keys, types, precedence, and every stage on it."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from checkpoints.config import CheckpointsConfig, load_checkpoints_config
from corpus.config import CorpusConfig, load_corpus_config
from evaluation.config import EvalConfig, load_eval_config
from pipelines.tokenize_config import TokenizeSection
from pretrain.config import ConfigError, ModelSection, PretrainConfig, load_config
from stagekit.config import (
    SECTIONS,
    add_config_arguments,
    load_section,
    read_config_file,
    read_section,
)
from stagekit.errors import BadInput
from stagekit.paths import LLAMA2_TOKENIZER, REPO
from tokenizer import merge as merge_cmd
from tokenizer import train as train_cmd
from tokenizer.config import TokenizerConfig
from tokenizer.sentencepiece_family import trainer_kwargs

DEMO = REPO / "configs" / "demo.yaml"
LLAMA2_7B = REPO / "configs" / "llama2-7b.yaml"
KOCPT = str(Path(sys.executable).parent / "kocpt")


def write(path: Path, document: dict) -> Path:
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    return path


def demo_with(tmp_path: Path, section: str, **values) -> Path:
    document = yaml.safe_load(DEMO.read_text())
    document[section] = {**(document.get(section) or {}), **values}
    return write(tmp_path / "config.yaml", document)


def one_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# --- the loader -------------------------------------------------------------------------------


def test_an_unknown_section_is_named_with_the_valid_ones(tmp_path):
    config = write(tmp_path / "c.yaml", {"pretrian": {"seq_length": 64}, "tokenizer": {"vocab_size": 3000}})
    with pytest.raises(BadInput) as error:
        read_config_file(config)
    message = str(error.value)
    assert "unknown section(s) pretrian" in message and str(config) in message
    assert all(name in message for name in SECTIONS)
    for load in (lambda: load_section(TokenizerConfig, "tokenizer", config), lambda: load_config(config),
                 lambda: load_corpus_config(config), lambda: load_eval_config(config),
                 lambda: load_checkpoints_config(config), lambda: load_section(TokenizeSection, "tokenize", config)):
        with pytest.raises(BadInput, match="pretrian"):  # every stage refuses the file, not only pretrain
            load()


@pytest.mark.parametrize("model, section, key, valid", [
    (CorpusConfig, "corpus", "read.paragraph_file", "paragraph_files"),
    (TokenizerConfig, "tokenizer", "vocab_sise", "vocab_size"),
    (ModelSection, "model", "hidden_sise", "hidden_size"),
    (PretrainConfig, "pretrain", "optimizer.lrr", "min_lr"),
    (EvalConfig, "eval", "korea", "korean"),
    (TokenizeSection, "tokenize", "batch_sise", "batch_size"),
    (CheckpointsConfig, "checkpoints", "resize.innit", "init"),
])
def test_an_unknown_key_is_named_with_the_valid_ones(model, section, key, valid):
    with pytest.raises(BadInput) as error:
        load_section(model, section, DEMO, [f"{section}.{key}=3"])
    message = str(error.value)
    parent, _, name = f"{section}.{key}".rpartition(".")
    assert f"{parent}: unknown key(s) {name} ({section}.{key})" in message
    assert "valid keys: " in message and valid in message.split("valid keys: ")[1]
    assert "\n" not in message


def test_an_unknown_key_in_the_file_is_refused_too(tmp_path):
    config = demo_with(tmp_path, "tokenizer", vocab_sise=3)
    with pytest.raises(BadInput, match=r"tokenizer: unknown key\(s\) vocab_sise"):
        load_section(TokenizerConfig, "tokenizer", config)


@pytest.mark.parametrize("override, message", [
    ("tokenizer.vocab_size=abc", "tokenizer.vocab_size: expected int, got 'abc'"),
    ("tokenizer.vocab_size=true", "tokenizer.vocab_size: expected int, got True"),
    ("tokenizer.character_coverage=high", "tokenizer.character_coverage: expected a number, got 'high'"),
    ("tokenizer.hangul_nfc=1", "tokenizer.hangul_nfc: expected true or false, got 1"),
    ("tokenizer.vocab_size=[1]", "tokenizer.vocab_size: expected int, got [1]"),
    ("tokenizer.vocab_size=100", "tokenizer.vocab_size must be >= 300, got 100"),  # the model's own validate()
])
def test_type_errors_name_the_key_the_type_and_the_value(override, message):
    with pytest.raises(BadInput) as error:
        load_section(TokenizerConfig, "tokenizer", DEMO, [override])
    assert str(error.value) == message


def test_yaml_values_numbers_and_nested_keys():
    pretrain = load_section(PretrainConfig, "pretrain", DEMO, [
        "pretrain.optimizer.lr=2e-4",  # YAML 1.1 reads this as a string
        "pretrain.stages.1.steps=1e2",
        "pretrain.data.blend.0.weight=3",
        "pretrain.init={hf: /models/llama}",
        "pretrain.checkpoint.dir=2024",  # a directory named by a number is a path
    ])
    assert pretrain.optimizer.lr == 2e-4 and pretrain.stages[1].steps == 100
    assert pretrain.data.blend[0].weight == 3.0 and isinstance(pretrain.data.blend[0].weight, float)
    assert pretrain.init == {"hf": "/models/llama"} and pretrain.checkpoint.dir == "2024"
    assert pretrain.optimizer.min_lr == 1e-4  # untouched keys keep the file's values
    corpus = load_section(CorpusConfig, "corpus", DEMO)
    assert corpus.read.paragraph_files == ("essays*.txt",)  # a YAML list where the model has a tuple


@pytest.mark.parametrize("override, message", [
    ("pretrain.stages.5.steps=1", "stages is a list of 2 item(s); there is no item 5"),
    ("pretrain.seq_length.x=1", "seq_length is 64, not a mapping or a list"),
    ("pretrain.data.blend=[{weight: 1}]", "pretrain.data.blend.0.path: required"),
    ("seq_length=64", "expected SECTION.KEY=VALUE"),
    ("pretrain.seq_length", "expected SECTION.KEY=VALUE"),
    ("pretrian.seq_length=64", "unknown section 'pretrian'"),
])
def test_bad_overrides_are_one_line_errors(override, message):
    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_section(PretrainConfig, "pretrain", DEMO, [override])


def test_overrides_for_other_sections_are_ignored_but_must_name_one():
    tokenizer = load_section(TokenizerConfig, "tokenizer", DEMO, ["eval.limit=5", "pretrain.nonsense=1"])
    assert tokenizer == load_section(TokenizerConfig, "tokenizer", DEMO)
    with pytest.raises(BadInput, match="unknown section 'tokeniser'"):
        load_section(TokenizerConfig, "tokenizer", DEMO, ["tokeniser.vocab_size=3000"])


def test_precedence_defaults_file_set_flags(tmp_path):
    config = demo_with(tmp_path, "tokenizer", vocab_size=5000, seed=1)
    assert load_section(TokenizerConfig, "tokenizer").vocab_size == TokenizerConfig().vocab_size
    assert load_section(TokenizerConfig, "tokenizer", config).vocab_size == 5000
    assert load_section(TokenizerConfig, "tokenizer", config, ["tokenizer.vocab_size=6000"]).vocab_size == 6000
    flagged = load_section(TokenizerConfig, "tokenizer", config, ["tokenizer.vocab_size=6000"],
                           flags={"vocab_size": 7000, "seed": None})
    assert flagged.vocab_size == 7000 and flagged.seed == 1  # None: the flag was not given
    nested = load_section(CorpusConfig, "corpus", config, ["corpus.read.txt_mode=paragraphs"],
                          flags={"read.text_field": "body"})
    assert (nested.read.txt_mode, nested.read.text_field, nested.read.paragraph_files) == ("paragraphs", "body", ("essays*.txt",))


def test_a_bad_value_is_reported_even_where_a_flag_replaces_it(tmp_path):
    config = demo_with(tmp_path, "eval", max_documents="many")
    with pytest.raises(BadInput, match="eval.max_documents: expected int, got 'many'"):
        load_eval_config(config, flags={"max_documents": 2})


def test_add_config_arguments():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(["--config", "c.yaml", "--set", "eval.limit=1", "--set", "eval.tasks=[nsmc]"])
    assert args.config == "c.yaml" and args.overrides == ["eval.limit=1", "eval.tasks=[nsmc]"]
    assert parser.parse_args([]).overrides == [] and parser.parse_args([]).config is None


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(BadInput, match="config file not found"):
        read_config_file(tmp_path / "absent.yaml")
    (tmp_path / "bad.yaml").write_text("tokenizer:\n  vocab_size: [1,\n")
    with pytest.raises(BadInput, match=r"not valid YAML \(.* at line \d+, column \d+\)"):
        read_config_file(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- corpus\n")
    with pytest.raises(BadInput, match="expected a mapping of sections"):
        read_config_file(tmp_path / "list.yaml")
    (tmp_path / "scalar.yaml").write_text("tokenizer: 5000\n")
    with pytest.raises(BadInput, match="section tokenizer: expected a mapping"):
        read_config_file(tmp_path / "scalar.yaml")


def test_every_bad_input_is_one_class():
    import evaluation
    import tokenizer

    assert tokenizer.BadInput is evaluation.BadInput is ConfigError is BadInput


# --- every key of the shipped configs has a reader -------------------------------------------


def section_readers() -> dict:
    """Section -> how the stage that reads it loads it (the same call the stage makes)."""
    from kocpt.compare_config import CompareSection
    from pretrain.plan import Cluster

    return {
        "corpus": lambda path: load_corpus_config(path),
        "tokenizer": lambda path: load_section(TokenizerConfig, "tokenizer", path),
        "model": lambda path: load_section(ModelSection, "model", path),
        "checkpoints": lambda path: load_checkpoints_config(path),
        "tokenize": lambda path: load_section(TokenizeSection, "tokenize", path),
        "pretrain": lambda path: load_section(PretrainConfig, "pretrain", path),
        "eval": lambda path: load_eval_config(path),
        "cluster": lambda path: load_section(Cluster, "cluster", path),
        "compare": lambda path: load_section(CompareSection, "compare", path),
    }


@pytest.mark.parametrize("config", [DEMO, LLAMA2_7B], ids=lambda path: path.name)
def test_every_section_of_the_shipped_configs_is_read_and_valid(config):
    readers = section_readers()
    document = read_config_file(config)
    assert set(document) <= set(readers), f"sections without a reader: {set(document) - set(readers)}"
    for section, values in document.items():
        loaded = readers[section](config)
        if dataclasses.is_dataclass(loaded):  # every key the file sets is a field, with the file's value
            as_dict = dataclasses.asdict(loaded)
            for key, value in values.items():
                assert key in as_dict, (section, key)
    if "pretrain" in document:
        load_config(config)  # the pretrain stage's own reading, with its cross-key checks


def test_every_tokenizer_key_reaches_train_or_merge(tmp_path):
    """The `tokenizer:` section is split between two commands: each key must change one of them."""
    changed = {"vocab_size": 3000, "model_type": "unigram", "character_coverage": 0.99, "sample_size": 7,
               "seed": 9, "mode": "chinese-llama", "hangul_nfc": True, "max_added": 100, "base": str(LLAMA2_TOKENIZER)}
    assert set(changed) == {field.name for field in dataclasses.fields(TokenizerConfig)}
    train_args = ["--input", "x", "--output", str(tmp_path / "ko"), "--config", str(DEMO)]
    merge_args = ["--add", "x.model", "--output", str(tmp_path / "tok"), "--config", str(DEMO)]

    def resolved(key=None, value=None):
        """What the commands use of their jobs: the trainer's flags, the sampling (tokenizer/training_text.py's
        read_sample reads sample_size and seed from the job's section), the base, the merge's settings."""
        sets = [] if key is None else ["--set", f"tokenizer.{key}={json.dumps(value)}"]
        train = train_cmd.resolve_config(train_cmd.build_parser().parse_args(train_args + sets))
        merge = merge_cmd.resolve_config(merge_cmd.build_parser().parse_args(merge_args + sets), "merge")
        return (trainer_kwargs(train), train.tokenizer.sample_size, train.tokenizer.seed, str(train.tokenizer.base_model()),
                merge.base, merge.mode, merge.max_added, merge.hangul_nfc)

    default = resolved()
    for key, value in changed.items():
        assert resolved(key, value) != default, f"tokenizer.{key} is read by neither train nor merge"


# --- the stage commands -----------------------------------------------------------------------


def test_tokenizer_train_reads_its_section_and_flags_win(tmp_path):
    config = demo_with(tmp_path, "tokenizer", vocab_size=5000, sample_size=1000, seed=3)
    parse = train_cmd.build_parser().parse_args
    base = ["--input", "x", "--output", "ko", "--config", str(config)]
    from_file = train_cmd.resolve_config(parse(base)).tokenizer  # the job holds its section
    assert (from_file.vocab_size, from_file.sample_size, from_file.seed) == (5000, 1000, 3)
    from_set = train_cmd.resolve_config(parse(base + ["--set", "tokenizer.vocab_size=6000"])).tokenizer
    assert from_set.vocab_size == 6000
    from_flag = train_cmd.resolve_config(parse(base + ["--set", "tokenizer.vocab_size=6000", "--vocab-size", "7000"]))
    assert trainer_kwargs(from_flag)["vocab_size"] == 7000 and from_flag.tokenizer.seed == 3
    no_config = train_cmd.resolve_config(parse(["--input", "x", "--output", "ko"])).tokenizer
    assert (no_config.vocab_size, no_config.sample_size) == (16000, 2_000_000)  # the command's defaults, as before


def test_tokenizer_merge_reads_base_and_max_added(tmp_path, capsys):
    config = demo_with(tmp_path, "tokenizer", base=str(LLAMA2_TOKENIZER), max_added=100, hangul_nfc=True)
    parse = merge_cmd.build_parser().parse_args
    base = ["--add", "ko.model", "--output", str(tmp_path / "tok"), "--config", str(config)]
    merge = merge_cmd.resolve_config(parse(base), "merge")
    assert (merge.base, merge.max_added, merge.hangul_nfc) == (str(LLAMA2_TOKENIZER), 100, True)
    flagged = merge_cmd.resolve_config(parse(base + ["--max-added", "5", "--no-hangul-nfc", "--base", "b.model"]), "merge")
    assert (flagged.base, flagged.max_added, flagged.hangul_nfc) == ("b.model", 5, False)
    assert capsys.readouterr().err == ""
    stand_in = merge_cmd.resolve_config(parse(base + ["--set", "tokenizer.base=null"]), "merge")
    assert stand_in.base.endswith("tokenizer.model.v1") and "standing in for Llama-2" in capsys.readouterr().err


@pytest.mark.parametrize("command", [
    ["corpus", "--input", str(REPO / "tests" / "data"), "--output", "out"],
    ["tokenizer", "train", "--input", "x", "--output", "ko"],
    ["tokenizer", "merge", "--add", "x.model", "--output", "tok"],
    ["eval", "--model", "m", "--output", "e"],
    ["pretrain", "--check"],
    ["tokenize", "corpus", "tokenized", "--tokenizer", str(LLAMA2_TOKENIZER)],
    ["checkpoints", "resize", "--model", "m", "--tokenizer", "t", "--output", "resized"],
    ["checkpoints", "convert", "--to", "megatron", "--input", "m", "--output", "converted"],
    ["demo"],
])
@pytest.mark.slow
def test_every_stage_command_refuses_unknown_sections_and_keys(command, tmp_path):
    section = {"corpus": "corpus", "tokenizer": "tokenizer", "eval": "eval", "pretrain": "pretrain",
               "tokenize": "tokenize", "checkpoints": "checkpoints", "demo": "tokenizer"}[command[0]]
    bad_key = demo_with(tmp_path, section, vocab_sise=3)
    bad_section = write(tmp_path / "section.yaml", {"pretrian": {}})
    extra = ["--output", str(tmp_path / "demo")] if command == ["demo"] else []
    for config, message in ((bad_key, f"{section}: unknown key(s) vocab_sise"), (bad_section, "unknown section(s) pretrian")):
        args = [*command, *extra, str(config)] if command[0] == "pretrain" else [*command, *extra, "--config", str(config)]
        result = subprocess.run([KOCPT, *args], capture_output=True, text=True, cwd=tmp_path, timeout=300)
        lines = [line for line in result.stderr.splitlines() if "error:" in line]  # Beam may warn on stderr
        assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert message in lines[0] and "valid" in lines[0]
    assert not any((tmp_path / name).exists() for name in ("demo", "e", "out", "tok", "tokenized", "resized", "converted"))


def test_demo_refuses_a_missing_base_before_any_stage(tmp_path, capsys):
    from kocpt import cli

    output = tmp_path / "demo"
    assert cli.main(["demo", "--output", str(output), "--set", f"tokenizer.base={tmp_path / 'absent'}"]) == 2
    assert one_line(capsys) == f"kocpt demo: error: {tmp_path / 'absent'}: no such base tokenizer"
    assert cli.main(["demo", "--output", str(output), "--until", "merg"]) == 2
    assert "--until merg: not a stage (stages: corpus, sp-train, merge," in one_line(capsys)
    assert not output.exists()


def test_kocpt_eval_bad_set_value_is_one_line(capsys):
    from kocpt import cli

    assert cli.main(["eval", "--model", "m", "--output", "e", "--set", "eval.limit=many"]) == 2
    assert one_line(capsys) == "kocpt eval: error: eval.limit: expected int, got 'many'"


# --- the demo passes --config and --set to its stages ----------------------------------------


@pytest.mark.slow
def test_demo_honours_tokenizer_base_and_max_added(tmp_path):
    """`tokenizer.base` and `tokenizer.max_added` (ignored by the demo before) reach the merge."""
    output = tmp_path / "demo"
    result = subprocess.run(
        [KOCPT, "demo", "--output", str(output), "--until", "merge", "--set", "tokenizer.max_added=100",
         "--set", "tokenizer.base=../shared/data/llama2-tokenizer"],  # relative to the repository root
        capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "standing in" not in result.stdout and "[3/3] merge" in result.stdout
    assert not (output / "base-model").exists()  # --until merge
    report = json.loads((output / "tokenizer" / "report.json").read_text())
    merge = report["merge"]
    assert report["vocab"]["base_pieces"] == merge["base_pieces"] == 32000  # Llama-2's, not Mistral's
    assert merge["skipped_limit"] > 0 and merge["added"] - merge["intermediates_added"] <= 100
    assert report["vocab"]["merged_pieces"] == 32000 + merge["added"] < 32000 + 200
    import sentencepiece

    merged = sentencepiece.SentencePieceProcessor(model_file=str(output / "tokenizer" / "tokenizer.model"))
    llama = sentencepiece.SentencePieceProcessor(model_file=str(LLAMA2_TOKENIZER))
    assert [merged.id_to_piece(i) for i in range(32000)] == [llama.id_to_piece(i) for i in range(32000)]
    assert (output / "tokenizer" / "LICENSE").is_file()  # Meta's license travels with the Llama-2 base
    # The stages got the config and the --set items, not arguments rebuilt from the section.
    for stage in ("sp-train", "merge"):
        command = (output / "logs" / f"{stage}.log").read_text().splitlines()[0]
        assert f"--config {DEMO}" in command and "--set tokenizer.max_added=100" in command
        assert "--vocab-size" not in command and "--mode" not in command
    assert "--set corpus." not in (output / "logs" / "corpus.log").read_text().splitlines()[0]


def test_demo_read_section_matches_the_file():
    document = yaml.safe_load(DEMO.read_text())
    for section in document:
        assert read_section(section, DEMO) == document[section]
