"""Training data: a blend of tokenized datasets through Megatron's GPTDataset.

A blend entry is a tokenized directory (its `manifest.json` lists the shard prefixes; within it
each prefix is weighted by its token count) or a single `.bin`/`.idx` prefix. The blend goes to
`BlendedMegatronDatasetBuilder`, which splits documents into train/valid/test, packs documents
into `seq_length + 1` token samples and interleaves the datasets by weight — deterministically
from the seed, so the same sample index always yields the same tokens. The data position is then
just the number of consumed samples, which is what the checkpoint stores.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pretrain.config import ConfigError, PretrainConfig


@dataclass
class BlendPart:
    prefix: str
    weight: float
    tokenizer_sha256: str | None


def expand_blend(config: PretrainConfig) -> list[BlendPart]:
    """Blend entries -> dataset prefixes with absolute weights. Raises ConfigError (one line)."""
    parts: list[BlendPart] = []
    for index, entry in enumerate(config.data.blend):
        path = Path(entry.path)
        where = f"pretrain.data.blend.{index}.path"
        if path.is_dir():
            manifest_path = path / "manifest.json"
            if not manifest_path.is_file():
                raise ConfigError(f"{where}: {path} has no manifest.json (not a tokenized dataset directory)")
            manifest = json.loads(manifest_path.read_text())
            datasets = manifest.get("datasets") or []
            total = sum(d["tokens"] for d in datasets)
            if not datasets or total == 0:
                raise ConfigError(f"{where}: {path} holds no tokens")
            sha = (manifest.get("tokenizer") or {}).get("sha256")
            for d in datasets:
                prefix = path / d["prefix"]
                _check_prefix(prefix, where)
                parts.append(BlendPart(str(prefix), entry.weight * d["tokens"] / total, sha))
        else:
            _check_prefix(path, where)
            parts.append(BlendPart(str(path), entry.weight, None))
    return parts


def _check_prefix(prefix: Path, where: str) -> None:
    for suffix in (".bin", ".idx"):
        if not prefix.with_name(prefix.name + suffix).is_file():
            raise ConfigError(f"{where}: {prefix}{suffix} not found (run `kocpt tokenize` first)")


class _DatasetTokenizer:
    """What GPTDataset asks of a tokenizer: the EOD id. (No pad id: Llama has none.)"""

    def __init__(self, eod: int):
        self.eod = eod
        self.vocab_size = None  # read the token dtype from each .idx file
        self.unique_identifiers = {"class": "kocpt", "eod": eod}  # part of the index cache key


def build_datasets(config: PretrainConfig, parts: list[BlendPart], eod: int, train_samples: int,
                   valid_samples: int, cache_dir: str):
    """(train, valid) datasets; every rank builds its own view (rank 0 writes the index cache)."""
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    dataset_config = GPTDatasetConfig(
        random_seed=config.data.seed,
        sequence_length=config.seq_length,
        blend=([p.prefix for p in parts], [p.weight for p in parts]),
        split=config.data.split,
        path_to_cache=cache_dir,
        tokenizer=_DatasetTokenizer(eod),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=config.data.eod_mask_loss,
        create_attention_mask=False,  # one causal mask for every sample (pretrain.model)
    )
    train, valid, _ = BlendedMegatronDatasetBuilder(
        GPTDataset, [train_samples, valid_samples, 0], lambda: True, dataset_config
    ).build()
    return train, valid


def micro_batches(dataset, start_sample: int, micro_batch_size: int, data_parallel_size: int,
                  data_parallel_rank: int) -> Iterator[dict]:
    """This DP rank's micro batches from sample `start_sample` on (Megatron's pretraining sampler:
    each group of `micro_batch_size × DP` consecutive samples is split across DP ranks)."""
    sample = start_sample
    stride = micro_batch_size * data_parallel_size
    while True:
        first = sample + data_parallel_rank * micro_batch_size
        items = [dataset[(first + i) % len(dataset)] for i in range(micro_batch_size)]
        yield {key: torch.stack([item[key] for item in items]) for key in ("tokens", "labels", "loss_mask", "position_ids")}
        sample += stride


def characters_table(char_lengths: np.ndarray, padded_vocab_size: int) -> torch.Tensor:
    table = torch.zeros(padded_vocab_size, dtype=torch.float64)
    table[: len(char_lengths)] = torch.from_numpy(char_lengths.astype(np.float64))
    return table
