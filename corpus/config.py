"""The corpus stage's typed configuration: the `corpus:` section of a run config (YAML)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from corpus.filters import QualityConfig
from corpus.minhash import MinHashConfig
from corpus.records import ReadOptions
from stagekit.config import load_section


@dataclass(frozen=True)
class CorpusConfig:
    read: ReadOptions = field(default_factory=ReadOptions)
    scrub_pii: bool = True
    quality: QualityConfig = field(default_factory=QualityConfig)
    exact_dedup: bool = True
    near_dedup: bool = True
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    num_shards: int | None = None  # None: derived from the input size and target_shard_mb
    target_shard_mb: float = 256.0  # uncompressed input MB per shard when num_shards is None
    zstd_level: int = 10
    rejected_shards: int = 1

    def validate(self) -> None:
        self.read.validate()
        self.quality.validate()
        self.minhash.validate()
        if self.num_shards is not None and self.num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {self.num_shards}")
        if self.target_shard_mb <= 0:
            raise ValueError(f"target_shard_mb must be > 0, got {self.target_shard_mb}")
        if not 1 <= self.zstd_level <= 22:
            raise ValueError(f"zstd_level must be in 1..22, got {self.zstd_level}")
        if self.rejected_shards < 1:
            raise ValueError(f"rejected_shards must be >= 1, got {self.rejected_shards}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_corpus_config(path: str | Path | None, overrides=(), flags: dict | None = None) -> CorpusConfig:
    """The `corpus:` section of a YAML run config (defaults when `path` is None), with `--set corpus.KEY=VALUE`
    overrides and explicit flags (dotted keys, e.g. {"read.txt_mode": "paragraphs"}) winning; validated."""
    return load_section(CorpusConfig, "corpus", path, overrides, flags)
