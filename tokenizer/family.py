"""Which tokenizer family a path belongs to, and what every family does: the one place the family is decided.

Two families:
- SentencePiece (Llama-2, Mistral): a `tokenizer.model` (any file name when given as a file), the Hugging
  Face files derived from it (tokenizer/sentencepiece_family.py);
- byte-level BPE (SmolLM2, Llama-3, Qwen2.5): a Hugging Face `tokenizer.json` whose model is BPE under a
  ByteLevel pre-tokenizer, and no `tokenizer.model` (tokenizer/byte_level_family.py).

Every stage that must know the family asks `family_of(path)` and then the family object; nothing else
looks at which files a directory holds to decide it (tests/unit/test_layout_tokenizer_family.py checks that).
A new family is one file implementing `TokenizerFamily` plus a line in `family_of`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Protocol

from tokenizer import BadInput
from tokenizer.byte_level_family import BYTE_LEVEL_FAMILY
from tokenizer.report_schema import BYTE_LEVEL, SENTENCEPIECE, TokenizerReport
from tokenizer.sentencepiece_family import SENTENCEPIECE_FAMILY

__all__ = ["BYTE_LEVEL", "SENTENCEPIECE", "TokenizerFamily", "family_of"]


class TokenizerFamily(Protocol):
    """What a tokenizer family does; `job`s are tokenizer/train.py's TrainConfig and tokenizer/merge.py's
    MergeConfig (each holds the `tokenizer:` section it was resolved from)."""

    name: str  # the report's `kind` (tokenizer/report_schema.py)
    file_name: str  # the file that makes a directory a tokenizer of this family

    def tokenizer_file(self, path: str | Path) -> Path:
        """The family's file of a tokenizer directory (or the file itself)."""

    def has_hf_files(self, directory: str | Path) -> bool:
        """The directory holds what AutoTokenizer loads."""

    def train(self, job, sentences: list[str], base: Path) -> dict:
        """Learn Korean pieces/merges for `base` from `sentences`; write them under `job.output`; a summary."""

    def merge(self, job) -> tuple[Path, TokenizerReport]:
        """Merge `job.add` into `job.base`, check, publish the directory `job.output`; (directory, its report)."""

    def merge_summary(self, report: dict) -> list[str]:
        """The lines the merge prints of its report.json."""

    def report(self, directory: Path, base: str | Path, texts, sweep_steps: int = 0,
               check_hf: bool = True) -> TokenizerReport:
        """`kocpt tokenizer report`: the merge's report of an existing directory against its base on `texts`
        (tokenizer/comparison.py's EvalTexts)."""

    def check(self, directory: Path, base: str | Path | None, text_files: list[str], code_files: int,
              max_lines: int, gguf: str | None) -> dict:
        """`kocpt tokenizer check`: the figures, "defects" and "notes"."""

    def check_summary(self, report: dict) -> list[str]:
        """The lines `kocpt tokenizer check` prints."""

    def encoder(self, path: str | Path):
        """The tokenizer as the data pipeline and training read it (tokenizer/token_encoder.py)."""

    def tokens(self, path: str | Path) -> list[str]:
        """Every id's token text, in id order, as llama.cpp's converter reads it (gaps as `[PADi]`)."""


def family_of(path: str | Path) -> TokenizerFamily:
    """The family of a tokenizer directory, a SentencePiece model file or a tokenizer.json; one-line BadInput
    when it is none."""
    path = Path(path)
    if path.is_dir():
        if (path / SENTENCEPIECE_FAMILY.file_name).is_file():
            return SENTENCEPIECE_FAMILY  # its tokenizer.json, if any, is derived from the model
        spec = path / BYTE_LEVEL_FAMILY.file_name
        if spec.is_file():
            if _is_byte_level_bpe(spec):
                return BYTE_LEVEL_FAMILY
            raise BadInput(f"{spec}: not a byte-level BPE tokenizer.json, and {path} has no tokenizer.model")
        raise BadInput(f"{path}: no tokenizer.model (SentencePiece) or tokenizer.json (byte-level BPE): "
                       "not a tokenizer directory")
    if not path.exists():
        raise BadInput(f"{path}: no such tokenizer (no such file or directory)")
    if path.suffix == ".json":
        if _is_byte_level_bpe(path):
            return BYTE_LEVEL_FAMILY
        raise BadInput(f"{path}: not a byte-level BPE tokenizer.json and not a SentencePiece model")
    return SENTENCEPIECE_FAMILY  # a model under any name (ko16k.model, tokenizer.model.v1): loading it says if not


def _is_byte_level_bpe(path: Path) -> bool:
    stat = path.stat()
    return _spec_is_byte_level_bpe(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _spec_is_byte_level_bpe(path: str, mtime_ns: int, size: int) -> bool:
    """Parsed once per file version: Llama-3's tokenizer.json is 9 MB and several stages ask."""
    try:
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: not a readable tokenizer.json ({exc})") from None
    model = spec.get("model") if isinstance(spec, dict) else None
    return isinstance(model, dict) and model.get("type") == "BPE" and "ByteLevel" in json.dumps(spec.get("pre_tokenizer"))
