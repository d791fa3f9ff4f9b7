"""The corpus stage's typed configuration: the `corpus:` section of a run config (YAML)."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from corpus.filters import QualityConfig
from corpus.minhash import MinHashConfig
from corpus.records import ReadOptions


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


def _check_scalar(hint, value, where: str):
    """`value` as the annotated type: int, float, str, bool, `X | None`, or `tuple[str, ...]`."""
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        item = typing.get_args(hint)[0]
        return tuple(_check_scalar(item, element, f"{where}[{index}]") for index, element in enumerate(value))
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind is not float and kind is not type(None) and isinstance(value, kind):
            if not (kind is int and isinstance(value, bool)):
                return value
    names = " or ".join(getattr(kind, "__name__", str(kind)) for kind in allowed)
    raise ValueError(f"{where}: expected {names}, got {value!r}")


def _build(cls, values, where: str):
    """A dataclass from a mapping, recursing into nested dataclasses; unknown keys are errors."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(hints)})")
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{where}.{name}")
        else:
            kwargs[name] = _check_scalar(hint, value, f"{where}.{name}")
    return cls(**kwargs)


def corpus_config_from_dict(values: dict | None) -> CorpusConfig:
    config = _build(CorpusConfig, values or {}, "corpus")
    config.validate()
    return config


def load_corpus_config(path: str | Path | None) -> CorpusConfig:
    """The `corpus:` section of a YAML run config (or the whole file if it has no such section)."""
    if path is None:
        return corpus_config_from_dict({})
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    section = document.get("corpus", document if "corpus" not in document and not _has_other_stages(document) else {})
    return corpus_config_from_dict(section)


def _has_other_stages(document: dict) -> bool:
    return any(key in document for key in ("tokenizer", "model", "pretrain", "checkpoints", "tokenize", "eval"))
