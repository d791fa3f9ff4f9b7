"""The tokenizer as the data pipeline (`kocpt tokenize`) and the training loop need it: ids, special
ids, characters.

A tokenizer directory (the tokenizer stage's output) is read through its SentencePiece
`tokenizer.model` — the file its HF tokenizer is tested to agree with — so tokenization does not
depend on transformers' conversions. A bare `.model` file works too. A byte-level BPE directory
(SmolLM2, Llama-3: `tokenizer.json` and no `tokenizer.model`) or a bare `tokenizer.json` is read
with Hugging Face `tokenizers`; its BOS/EOS are the `bos_token`/`eos_token` of the directory's
tokenizer_config.json (what transformers uses), -1 when it names none.

`char_lengths()` gives, per id, how many characters of text the piece stands for. The training
loop uses it for bits per character: bpc = Σ NLL / ln 2 / Σ chars(target tokens).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tokenizer import BadInput
from tokenizer.spm_model import resolve_model_path


def is_byte_level_dir(path: str | Path) -> bool:
    """A byte-level BPE tokenizer directory: a tokenizer.json and no SentencePiece tokenizer.model."""
    path = Path(path)
    return path.is_dir() and not (path / "tokenizer.model").is_file() and (path / "tokenizer.json").is_file()


def tokenizer_file(path: str | Path) -> Path:
    """The SentencePiece tokenizer.model of a tokenizer directory (or a bare file); for a byte-level
    BPE directory (`is_byte_level_dir`), its tokenizer.json."""
    path = Path(path)
    if is_byte_level_dir(path):
        return path / "tokenizer.json"
    try:
        return resolve_model_path(path)
    except BadInput as exc:
        raise BadInput(f"{exc} or tokenizer.json" if path.is_dir() else str(exc)) from None


@dataclass
class TokenEncoder:
    """SentencePiece encoder; picklable (it loads the model lazily in each worker)."""

    model_path: str
    _processor: object = None

    @classmethod
    def load(cls, path: str | Path) -> TokenEncoder:
        model_path = tokenizer_file(path)
        encoder = ByteLevelEncoder(str(model_path)) if model_path.suffix == ".json" else cls(str(model_path))
        encoder.processor  # fail now, with the path in the message, not inside a worker
        return encoder

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
        processor = self.processor
        lengths = np.zeros(processor.GetPieceSize(), dtype=np.int64)
        for piece_id in range(processor.GetPieceSize()):
            if processor.IsControl(piece_id) or processor.IsUnknown(piece_id):
                continue
            piece = processor.IdToPiece(piece_id)
            if processor.IsByte(piece_id):  # "<0xE3>": one character per UTF-8 lead byte
                value = int(piece[3:-1], 16)
                lengths[piece_id] = 0 if 0x80 <= value < 0xC0 else 1
            else:
                lengths[piece_id] = len(piece.replace("\u2581", " "))
        return lengths


@dataclass
class ByteLevelEncoder(TokenEncoder):
    """Byte-level BPE encoder (HF `tokenizers`), the same interface as the SentencePiece one."""

    @property
    def processor(self):
        if self._processor is None:
            from tokenizers import Tokenizer

            try:
                self._processor = Tokenizer.from_file(self.model_path)
            except Exception as exc:  # tokenizers raises a bare Exception on a bad file
                raise BadInput(f"{self.model_path}: not a tokenizer.json ({str(exc).splitlines()[0]})") from None
        return self._processor

    def _special_id(self, key: str) -> int:
        config_file = Path(self.model_path).with_name("tokenizer_config.json")
        token = json.loads(config_file.read_text()).get(key) if config_file.is_file() else None
        if isinstance(token, dict):  # {"content": ...} in older transformers files
            token = token.get("content")
        found = self.processor.token_to_id(token) if token else None
        return -1 if found is None else found

    @property
    def vocab_size(self) -> int:
        return 1 + max(self.processor.get_vocab(with_added_tokens=True).values())

    @property
    def bos_id(self) -> int:
        return self._special_id("bos_token")

    @property
    def eos_id(self) -> int:
        return self._special_id("eos_token")

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.processor.encode_batch(texts, add_special_tokens=False)]

    def pieces(self) -> list[str]:
        by_id = {i: token for token, i in self.processor.get_vocab(with_added_tokens=True).items()}
        return [by_id.get(i, "") for i in range(self.vocab_size)]

    def char_lengths(self) -> np.ndarray:
        """Characters each id contributes: UTF-8 lead bytes of its bytes; special tokens 0."""
        from transformers.convert_slow_tokenizer import bytes_to_unicode  # GPT-2's byte alphabet

        byte_of = {char: byte for byte, char in bytes_to_unicode().items()}
        specials = {t.content for t in self.processor.get_added_tokens_decoder().values() if t.special}
        lengths = np.zeros(self.vocab_size, dtype=np.int64)
        for token, token_id in self.processor.get_vocab(with_added_tokens=True).items():
            if token in specials:
                continue
            if all(c in byte_of for c in token):
                lengths[token_id] = sum(1 for c in token if not 0x80 <= byte_of[c] < 0xC0)
            else:  # an added plain-text token (not in the byte alphabet)
                lengths[token_id] = len(token)
        return lengths


def indexed_dtype(vocab_size: int):
    """uint16 when every id fits (Megatron's GPTDataset rule), int32 otherwise."""
    return np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32
