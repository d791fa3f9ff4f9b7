"""The demo's stages: which command each runs, on what, writing where (see `kocpt/demo.py`)."""

from __future__ import annotations

import sys
from pathlib import Path

from kocpt.demo import DEMO_CORPUS, REPO, SHARED_DATA, DemoError, Stage, run_command


def build_tiny_llama(output: Path, model_section: dict, vocab_size: int, seed: int = 1234) -> None:
    """A tiny Llama-2-shaped HF model (random weights) from the config's `model:` section."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the demo prints one line per stage
    shape = {key: value for key, value in model_section.items() if key != "base_vocab_size"}
    config = LlamaConfig(vocab_size=vocab_size, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, **shape)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    tmp = output.with_name(output.name + ".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    tmp.rename(output)


def base_vocab_size(base_tokenizer: Path) -> int:
    import sentencepiece

    model = base_tokenizer / "tokenizer.model" if base_tokenizer.is_dir() else base_tokenizer
    return sentencepiece.SentencePieceProcessor(model_file=str(model)).get_piece_size()


def demo_stages(out: Path, config_path: Path, config: dict, base_tokenizer: Path, base_model: Path | None) -> list[Stage]:
    python = sys.executable
    logs = out / "logs"
    tok = config.get("tokenizer", {})
    model_section = config.get("model", {})
    heldout_ko = SHARED_DATA / "ko-heldout" / "korean-english-park.test.ko"
    heldout_en = SHARED_DATA / "en" / "korean-english-park.test.en"
    evaluation_texts = [path for path in (heldout_ko, heldout_en) if path.is_file()]

    def run(name: str, *args, env=None):
        run_command(name, [python, *map(str, args)], logs, env)

    corpus = Stage(
        "corpus", out / "corpus",
        lambda: run("corpus", "-m", "pipelines.corpus", "--input", DEMO_CORPUS, "--output", out / "corpus", "--config", config_path),
        settings={"corpus": config.get("corpus")}, reads=[DEMO_CORPUS],
    )
    ko_spm = out / "ko-sp"
    train = Stage(
        "sp-train", ko_spm,
        lambda: (ko_spm.mkdir(), run(
            "sp-train", REPO / "tokenizer" / "train.py", "--input", out / "corpus", "--output", ko_spm / "ko",
            "--vocab-size", tok.get("vocab_size", 2000), "--model-type", tok.get("model_type", "bpe"),
            "--character-coverage", tok.get("character_coverage", 0.9995), "--sample-size", tok.get("sample_size", 200000),
            "--seed", tok.get("seed", 1234))),
        settings={"tokenizer": tok}, after=["corpus"],
    )
    merge_args = ["--mode", tok.get("mode", "safe")] + (["--hangul-nfc"] if tok.get("hangul_nfc") else [])
    merge_args += [arg for path in evaluation_texts[:1] for arg in ("--eval-korean", path)]
    merge_args += [arg for path in evaluation_texts[1:] for arg in ("--eval-english", path)]
    merge = Stage(
        "merge", out / "tokenizer",
        lambda: run("merge", REPO / "tokenizer" / "merge.py", "--base", base_tokenizer, "--add", ko_spm / "ko.model",
                    "--output", out / "tokenizer", *merge_args),
        settings={"tokenizer": tok}, reads=[base_tokenizer, *evaluation_texts], after=["sp-train"],
    )
    if base_model is None:
        base = Stage(
            "base-model", out / "base-model",
            lambda: build_tiny_llama(out / "base-model", model_section, base_vocab_size(base_tokenizer)),
            settings={"model": model_section}, reads=[base_tokenizer],
        )
    else:
        if not (base_model / "config.json").is_file():
            raise DemoError(f"{base_model}: not a Hugging Face model directory (no config.json)")
        base = Stage("base-model", base_model, lambda: None, reads=[base_model / "config.json"])
    resize = Stage(
        "resize", out / "resized",
        lambda: run("resize", "-m", "checkpoints.resize", "--model", base.output, "--tokenizer", out / "tokenizer",
                    "--output", out / "resized", "--init", "fvt", "--base-tokenizer", base_tokenizer),
        after=["base-model", "merge"],
    )
    convert = Stage(
        "convert", out / "megatron-init",
        lambda: run("convert", "-m", "checkpoints.convert", "--to", "megatron", "--input", out / "resized",
                    "--output", out / "megatron-init"),
        after=["resize"],
    )
    tokenize = Stage(
        "tokenize", out / "tokenized",
        lambda: run("tokenize", "-m", "pipelines.tokenize_corpus", out / "corpus", out / "tokenized",
                    "--tokenizer", out / "tokenizer", "--config", config_path),
        settings={"tokenize": config.get("tokenize")}, after=["corpus", "merge"],
    )
    overrides = [
        f"tokenizer={out / 'tokenizer'}",
        f"init.megatron_checkpoint={out / 'megatron-init'}",
        f"data.blend.0.path={out / 'tokenized'}",
        f"checkpoint.dir={out / 'pretrain'}",
    ]
    pretrain = Stage(
        "pretrain", out / "pretrain",
        lambda: run_command("pretrain", ["bash", str(REPO / "pretrain" / "launch.sh"), str(config_path),
                                         *[arg for item in overrides for arg in ("--set", item)]],
                            logs, {"KOCPT_PYTHON": python}),
        settings={"pretrain": config.get("pretrain"), "model": model_section}, after=["convert", "tokenize"],
    )
    export = Stage(
        "export", out / "final",
        lambda: run("export", "-m", "checkpoints.convert", "--to", "hf", "--input", out / "pretrain",
                    "--output", out / "final", "--tokenizer", out / "tokenizer"),
        after=["pretrain"],
    )
    evaluate = Stage(
        "eval", out / "eval",
        lambda: run("eval", "-m", "evaluation.run", "--model", out / "final", "--label", "trained",
                    "--output", out / "eval", "--config", config_path,
                    "--baseline", f"base={base.output},{base_tokenizer}", "--baseline", f"resized={out / 'resized'}",
                    "--tensorboard", out / "pretrain", "--tokenizer-report", out / "tokenizer" / "report.json"),
        settings={"eval": config.get("eval")}, reads=evaluation_texts, after=["export"],
    )
    return [corpus, train, merge, base, resize, convert, tokenize, pretrain, export, evaluate]
