"""`kocpt eval` settings: the `eval:` section of a run config (e.g. configs/demo.yaml), then CLI flags.

    eval:
      korean: [../shared/data/ko-heldout/korean-english-park.test.ko]   # held-out Korean, one document a line
      english: [../shared/data/en/korean-english-park.test.en]
      max_documents: 500      # per text file; 0 = all
      context: null           # tokens per window; null = the model's max_position_embeddings
      stride: null            # null = context // 2
      tasks: [korsts, kornli, nsmc]
      task_data: {}           # e.g. {nsmc: /data/nsmc/ratings_test.txt}
      limit: null             # documents per lm-eval task; null = all
      prompts: ["옛날 옛적에 한 마을에"]

Relative paths are relative to the working directory (the repository root for the demo).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from evaluation import BadInput

HELD_OUT = "../shared/data/ko-heldout/korean-english-park.test.ko"
ENGLISH = "../shared/data/en/korean-english-park.test.en"


@dataclass
class EvalConfig:
    korean: list[str] = field(default_factory=lambda: [HELD_OUT])
    english: list[str] = field(default_factory=lambda: [ENGLISH])
    max_documents: int = 500
    context: int | None = None
    stride: int | None = None
    max_batch_tokens: int = 4096  # tokens per forward pass when scoring bits per character
    tasks: list[str] = field(default_factory=lambda: ["korsts", "kornli", "nsmc"])
    task_data: dict[str, str] = field(default_factory=dict)
    limit: int | None = None
    batch_size: int = 8  # lm-eval batch size
    prompts: list[str] = field(default_factory=lambda: ["옛날 옛적에 한 마을에", "대한민국의 수도는"])
    max_new_tokens: int = 40
    # TensorBoard scalar tags, first one present wins (pretrain/train.py writes loss and val_bpc).
    loss_tags: list[str] = field(default_factory=lambda: ["loss", "lm loss", "train/loss"])
    bpc_tags: list[str] = field(default_factory=lambda: ["val_bpc", "validation/bits_per_char"])
    skip_missing: bool = False  # skip (and say so) text files / task data that do not exist

    def validate(self) -> "EvalConfig":
        if self.max_documents < 0:
            raise BadInput(f"eval.max_documents must be >= 0 (got {self.max_documents})")
        if self.context is not None and self.context < 2:
            raise BadInput(f"eval.context must be >= 2 (got {self.context})")
        if self.stride is not None and (self.stride < 1 or (self.context and self.stride >= self.context)):
            raise BadInput(f"eval.stride must be in [1, context) (got {self.stride}, context {self.context})")
        if self.limit is not None and self.limit <= 0:
            raise BadInput(f"eval.limit must be positive (got {self.limit})")
        if self.batch_size < 1 or self.max_batch_tokens < 1 or self.max_new_tokens < 0:
            raise BadInput("eval.batch_size and eval.max_batch_tokens must be >= 1, eval.max_new_tokens >= 0")
        return self


def _check_type(key: str, value, hint) -> None:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return
        hint = next(a for a in args if a is not type(None))
        origin = typing.get_origin(hint)
    expected = origin or hint
    if expected is float and isinstance(value, int):
        return
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise BadInput(f"eval.{key}: expected {getattr(expected, '__name__', expected)}, got {value!r}")
    if expected is list and not all(isinstance(v, str) for v in value):
        raise BadInput(f"eval.{key}: expected a list of strings, got {value!r}")
    if expected is dict and not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise BadInput(f"eval.{key}: expected a mapping of names to paths, got {value!r}")


def from_mapping(section: dict | None) -> EvalConfig:
    section = dict(section or {})
    hints = typing.get_type_hints(EvalConfig)
    names = {f.name for f in dataclasses.fields(EvalConfig)}
    unknown = sorted(set(section) - names)
    if unknown:
        raise BadInput(f"eval: unknown key(s) {unknown} (known: {sorted(names)})")
    for key, value in section.items():
        _check_type(key, value, hints[key])
    return EvalConfig(**section)


def load_section(path: str | Path | None) -> EvalConfig:
    """The `eval:` section of a YAML run config (defaults when `path` is None or has no such section)."""
    if path is None:
        return EvalConfig()
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise BadInput(f"{path}: config not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("eval", {}), (dict, type(None))):
        raise BadInput(f"{path}: expected a mapping with an `eval:` mapping")
    try:
        return from_mapping(raw.get("eval"))
    except BadInput as exc:
        raise BadInput(f"{path}: {exc}") from None
