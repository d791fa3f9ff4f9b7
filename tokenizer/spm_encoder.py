"""The SentencePiece family's encoder (tokenizer/token_encoder.py's `TokenEncoder`): a tokenizer directory is
read through its `tokenizer.model`, the file its HF tokenizer is tested to agree with, so tokenization does
not depend on transformers' conversions."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tokenizer import BadInput


@dataclass
class SentencePieceEncoder:
    """SentencePiece encoder; picklable (it loads the model lazily in each worker)."""

    model_path: str
    _processor: object = None

    def __getstate__(self):
        return {"model_path": self.model_path, "_processor": None}

    @property
    def processor(self):
        if self._processor is None:
            import sentencepiece as spm

            processor = spm.SentencePieceProcessor()
            try:
                processor.Load(self.model_path)
            except (OSError, RuntimeError) as exc:
                raise BadInput(f"{self.model_path}: not a SentencePiece model ({exc})") from None
            self._processor = processor
        return self._processor

    @property
    def vocab_size(self) -> int:
        return self.processor.GetPieceSize()

    @property
    def bos_id(self) -> int:
        return self.processor.bos_id()

    @property
    def eos_id(self) -> int:
        return self.processor.eos_id()

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.processor.Encode(texts, out_type=int, num_threads=1)  # one core per worker

    def sha256(self) -> str:
        return hashlib.sha256(Path(self.model_path).read_bytes()).hexdigest()

    def pieces(self) -> list[str]:
        """Every id's piece, in id order (what a model's rows were trained to mean)."""
        return [self.processor.IdToPiece(i) for i in range(self.vocab_size)]

    def char_lengths(self) -> np.ndarray:
        """Characters each id contributes to decoded text (control ids 0, UTF-8 lead bytes 1)."""
        return self._lengths(len, lambda value: 0 if 0x80 <= value < 0xC0 else 1)

    def byte_lengths(self) -> np.ndarray:
        """UTF-8 bytes each id contributes to decoded text (control ids 0, byte pieces 1)."""
        return self._lengths(lambda text: len(text.encode("utf-8")), lambda value: 1)

    def _lengths(self, of_text, of_byte) -> np.ndarray:
        """Per id: `of_text` of its text ("▁" as a space), `of_byte` of a byte piece's value ("<0xE3>")."""
        processor = self.processor
        lengths = np.zeros(processor.GetPieceSize(), dtype=np.int64)
        for piece_id in range(processor.GetPieceSize()):
            if processor.IsControl(piece_id) or processor.IsUnknown(piece_id):
                continue
            piece = processor.IdToPiece(piece_id)
            lengths[piece_id] = (of_byte(int(piece[3:-1], 16)) if processor.IsByte(piece_id)
                                 else of_text(piece.replace("\u2581", " ")))
        return lengths
