"""The tokenizer as the data pipeline (`kocpt tokenize`) and the training loop need it: ids, special
ids, characters. `TokenEncoder.load(path)` asks the path's family (tokenizer/family.py) for its encoder:
tokenizer/spm_encoder.py (a SentencePiece `tokenizer.model`) or tokenizer/bpe_encoder.py (a byte-level
BPE `tokenizer.json`). Both are picklable and load their file lazily in each worker.

`char_lengths()` gives, per id, how many characters of text the piece stands for. The training
loop uses it for bits per character: bpc = Σ NLL / ln 2 / Σ chars(target tokens).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np


class TokenEncoder(Protocol):
    """What every family's encoder gives."""

    model_path: str  # the file it reads (tokenizer.model or tokenizer.json)

    @property
    def vocab_size(self) -> int: ...

    @property
    def bos_id(self) -> int: ...  # -1: none

    @property
    def eos_id(self) -> int: ...

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...

    def sha256(self) -> str: ...

    def pieces(self) -> list[str]:
        """Every id's piece, in id order (what a model's rows were trained to mean)."""

    def char_lengths(self) -> np.ndarray:
        """Characters each id contributes to decoded text."""

    def byte_lengths(self) -> np.ndarray:
        """UTF-8 bytes each id contributes to decoded text (where two tokenizations of one text line up)."""

    @staticmethod
    def load(path: str | Path) -> TokenEncoder:
        """The encoder of a tokenizer directory or file, of whichever family it is."""
        from tokenizer.family import family_of

        encoder = family_of(path).encoder(path)
        encoder.processor  # fail now, with the path in the message, not inside a worker
        return encoder


def indexed_dtype(vocab_size: int):
    """uint16 when every id fits (Megatron's GPTDataset rule), int32 otherwise."""
    return np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32
