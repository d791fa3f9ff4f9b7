"""The demo's stages: which command each runs, on what, writing where (see `kocpt/demo.py`)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from kocpt.stage_runner import DemoError, Stage, run_command
from mcore_llama.families import hf_config_of
from mcore_llama.shape import LlamaShape
from pretrain.config import ModelSection, load_config
from stagekit.config import load_section, parse_override, read_config_file, read_section
from stagekit.paths import DEMO_CORPUS, EN_HELDOUT, KO_HELDOUT, REPO
from tokenizer.config import TokenizerConfig
from tokenizer.token_encoder import TokenEncoder


def build_tiny_llama(output: Path, model: ModelSection, vocab_size: int, seed: int = 1234) -> None:
    """A tiny HF Llama (random weights) of the `model:` section, its defaults included: the shape training
    builds from the same section (`LlamaShape.from_model_section`), written by its family's HF config."""
    from transformers import LlamaConfig
    from transformers.utils import logging as hf_logging

    from checkpoints.tiny_llama import write_tiny_llama  # torch: only when the stage runs

    hf_logging.disable_progress_bar()  # the demo prints one line per stage
    shape = LlamaShape.from_model_section(model, vocab_size)
    config = hf_config_of(shape, {"bos_token_id": 1, "eos_token_id": 2, "initializer_range": shape.initializer_range})
    write_tiny_llama(output, LlamaConfig(**config), seed=seed, randomize_norms=False)


def check_sections(config: Path, sets: list[str], out: Path) -> TokenizerConfig:
    """Every section a demo stage reads, validated as that stage will (a typo fails here, in a second,
    not after the corpus job); returns the `tokenizer:` section."""
    from checkpoints.config import load_checkpoints_config
    from corpus.config import load_corpus_config
    from evaluation.config import load_eval_config
    from pipelines.tokenize_config import TokenizeSection

    read_config_file(config)
    load_corpus_config(config, sets)
    load_checkpoints_config(config, sets)
    load_section(TokenizeSection, "tokenize", config, sets)
    load_eval_config(config, sets)
    load_config(config, pretrain_overrides(out, sets))  # pretrain: and model:
    return load_section(TokenizerConfig, "tokenizer", config, sets)


def for_sections(sets: list[str], *sections: str) -> list[str]:
    """The `--set` items a stage reading `sections` gets."""
    return [item for item in sets if parse_override(item)[0] in sections]


def pretrain_overrides(out: Path, sets: list[str]) -> list[str]:
    """The user's pretrain/model --set items, then the demo's own paths (which win)."""
    return [*for_sections(sets, "pretrain", "model"), f"tokenizer={out / 'tokenizer'}",
            f"init.megatron_checkpoint={out / 'megatron-init'}", f"data.blend.0.path={out / 'tokenized'}",
            f"checkpoint.dir={out / 'pretrain'}"]


def set_args(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def demo_stages(out: Path, config_path: Path, sets: list[str], tok: TokenizerConfig, base_tokenizer: Path,
                base_model: Path | None) -> list[Stage]:
    """The stage list; each command gets `--config config_path` and the `--set` items of its sections."""
    python = sys.executable
    logs = out / "logs"
    model = load_section(ModelSection, "model", config_path, sets)  # typed, with ModelSection's defaults
    evaluation_texts = [path for path in (KO_HELDOUT, EN_HELDOUT) if path.is_file()]
    config = ["--config", config_path]

    def run(name: str, *args, env=None):
        run_command(name, [python, *map(str, args)], logs, env)

    def settings(*sections: str) -> dict:
        return {section: read_section(section, config_path, sets) for section in sections}

    corpus = Stage(
        "corpus", out / "corpus",
        lambda: run("corpus", "-m", "pipelines.corpus", "--input", DEMO_CORPUS, "--output", out / "corpus", *config,
                    *set_args(for_sections(sets, "corpus"))),
        settings=settings("corpus"), reads=[DEMO_CORPUS],
    )
    ko_spm = out / "ko-sp"
    tokenizer_sets = set_args(for_sections(sets, "tokenizer"))
    train = Stage(
        "sp-train", ko_spm,
        lambda: (ko_spm.mkdir(), run("sp-train", "-m", "tokenizer.train", "--input", out / "corpus",
                                     "--output", ko_spm / "ko", *config, *tokenizer_sets)),
        settings={"tokenizer": dataclasses.asdict(tok)}, after=["corpus"],
    )
    # The merge resolves tokenizer.base (or the stand-in) as the demo did for base_tokenizer.
    merge_args = [arg for path in evaluation_texts[:1] for arg in ("--eval-korean", path)]
    merge_args += [arg for path in evaluation_texts[1:] for arg in ("--eval-english", path)]
    merge = Stage(
        "merge", out / "tokenizer",
        lambda: run("merge", "-m", "tokenizer.merge", "--add", ko_spm / "ko.model", "--output", out / "tokenizer",
                    *config, *tokenizer_sets, *merge_args),
        settings={"tokenizer": dataclasses.asdict(tok)}, reads=[base_tokenizer, *evaluation_texts], after=["sp-train"],
    )
    if base_model is None:
        base = Stage(
            "base-model", out / "base-model",
            lambda: build_tiny_llama(out / "base-model", model, TokenEncoder.load(base_tokenizer).vocab_size),
            settings={"model": dataclasses.asdict(model)}, reads=[base_tokenizer],
        )
    else:
        if not (base_model / "config.json").is_file():
            raise DemoError(f"{base_model}: not a Hugging Face model directory (no config.json)")
        base = Stage("base-model", base_model, lambda: None, reads=[base_model / "config.json"])
    checkpoints_sets = set_args(for_sections(sets, "checkpoints"))
    resize = Stage(
        "resize", out / "resized",
        lambda: run("resize", "-m", "checkpoints.resize", "--model", base.output, "--tokenizer", out / "tokenizer",
                    "--output", out / "resized", "--base-tokenizer", base_tokenizer, *config, *checkpoints_sets),
        settings=settings("checkpoints"), after=["base-model", "merge"],
    )
    convert = Stage(
        "convert", out / "megatron-init",
        lambda: run("convert", "-m", "checkpoints.convert", "--to", "megatron", "--input", out / "resized",
                    "--output", out / "megatron-init", *config, *checkpoints_sets),
        settings=settings("checkpoints"), after=["resize"],
    )
    tokenize = Stage(
        "tokenize", out / "tokenized",
        lambda: run("tokenize", "-m", "pipelines.tokenize_corpus", out / "corpus", out / "tokenized",
                    "--tokenizer", out / "tokenizer", *config, *set_args(for_sections(sets, "tokenize"))),
        settings=settings("tokenize"), after=["corpus", "merge"],
    )
    pretrain = Stage(
        "pretrain", out / "pretrain",
        lambda: run_command("pretrain", ["bash", str(REPO / "pretrain" / "launch.sh"), str(config_path),
                                         *set_args(pretrain_overrides(out, sets))], logs, {"KOCPT_PYTHON": python}),
        settings=settings("pretrain", "model"), after=["convert", "tokenize"],
    )
    export = Stage(
        "export", out / "final",
        lambda: run("export", "-m", "checkpoints.convert", "--to", "hf", "--input", out / "pretrain",
                    "--output", out / "final", "--tokenizer", out / "tokenizer", *config, *checkpoints_sets),
        settings=settings("checkpoints"), after=["pretrain"],
    )
    evaluate = Stage(
        "eval", out / "eval",
        lambda: run("eval", "-m", "evaluation.run", "--model", out / "final", "--label", "trained",
                    "--output", out / "eval", *config, *set_args(for_sections(sets, "eval")),
                    "--baseline", f"base={base.output},{base_tokenizer}", "--baseline", f"resized={out / 'resized'}",
                    "--tensorboard", out / "pretrain", "--tokenizer-report", out / "tokenizer" / "report.json"),
        settings=settings("eval"), reads=evaluation_texts, after=["export"],
    )
    return [corpus, train, merge, base, resize, convert, tokenize, pretrain, export, evaluate]
