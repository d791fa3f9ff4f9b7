"""Shared inputs for the pretraining tests: corpus shards, tokenized data, tiny configs.

Everything here is written by the tests themselves from the real data in ../shared/data
(never copied into the repository).
"""

from __future__ import annotations

import json
from pathlib import Path


from corpus.shards import write_texts_as_corpus
from stagekit.paths import KO_TRAIN, LLAMA2_TOKENIZER


def korean_lines(limit: int, source: str = "nsmc_raw_reviews.txt", skip: int = 0) -> list[str]:
    lines = []
    with open(KO_TRAIN / source, encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            if index < skip:
                continue
            line = line.rstrip("\n")
            if line.strip():
                lines.append(line)
            if len(lines) >= limit:
                break
    return lines


def write_shards(directory: Path, texts: list[str], num_shards: int, source: str = "ko-train") -> list[list[dict]]:
    """Corpus-stage layout: DIR/shards/part-NNNNN-of-MMMMM.jsonl.zst (+ manifest.json)."""
    return write_texts_as_corpus(directory, texts, num_shards, source)


def tokenized_corpus(tmp_path_factory, num_docs: int = 600):
    """Two shards of real Korean reviews tokenized by the pipeline with the Llama-2 tokenizer.

    Cached under the session's base temp dir, so every test module shares one pipeline run.
    Returns (output dir, documents per shard).
    """
    from pipelines.tokenize_corpus import TokenizeJob, run

    base = tmp_path_factory.getbasetemp() / "pretrain-tokenized"
    corpus, out = base / "corpus", base / "tokenized"
    shards = write_shards(corpus, korean_lines(num_docs), 2) if not (out / "manifest.json").exists() else None
    if shards is None:
        texts = korean_lines(num_docs)
        shards = [[{"text": t} for i, t in enumerate(texts) if i % 2 == k] for k in range(2)]
    else:
        # In this process (no worker processes): the config tests that read it stay in the hermetic tier.
        run(TokenizeJob(corpus=str(corpus), output=str(out), tokenizer=str(LLAMA2_TOKENIZER)),
            ["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    return out, shards


TINY_MODEL = {
    "hidden_size": 64,
    "intermediate_size": 172,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 256,
    "base_vocab_size": 31000,
}


def tiny_config(path: Path, data_dir: Path, run_dir: Path, **pretrain) -> Path:
    """A tiny-model config (2 layers, hidden 64, seq 64) written as YAML; keys override."""
    import yaml

    section = {
        "tokenizer": str(LLAMA2_TOKENIZER),
        "micro_batch_size": 2,
        "global_batch_size": 4,
        "seq_length": 64,
        "train_steps": 5,
        "optimizer": {"lr": 1.0e-3, "min_lr": 1.0e-4, "warmup_steps": 1},
        "data": {"blend": [{"path": str(data_dir)}], "split": "90,10,0"},
        "eval": {"interval": 0, "iters": 1},
        "checkpoint": {"dir": str(run_dir), "interval": 2, "keep_last": 10},
    }
    section.update(pretrain)
    path.write_text(yaml.safe_dump({"model": dict(TINY_MODEL), "pretrain": section}))
    return path


def metrics(run_dir: Path) -> dict[int, dict]:
    """Per-step metrics of a run (a resumed step overwrites the earlier record)."""
    found = {}
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        found[record["step"]] = record
    return found


def checkpoint_tensors(ckpt_dir: Path, tmp: Path) -> dict:
    """All tensors of a dist checkpoint, read offline (no process group)."""
    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / (Path(ckpt_dir).name + ".pt")
    dcp_to_torch_save(str(ckpt_dir), str(out))
    return {k: v for k, v in torch.load(out, weights_only=False).items() if isinstance(v, torch.Tensor)}
