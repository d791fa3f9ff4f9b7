"""The byte-level BPE family's encoder (tokenizer/token_encoder.py's `TokenEncoder`): a `tokenizer.json` read
with Hugging Face `tokenizers`; its BOS/EOS are the `bos_token`/`eos_token` of the directory's
tokenizer_config.json (what transformers uses), -1 when it names none."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tokenizer import BadInput


@dataclass
class ByteLevelEncoder:
    """Byte-level BPE encoder (HF `tokenizers`); picklable (it loads tokenizer.json lazily in each worker)."""

    model_path: str
    _processor: object = None

    def __getstate__(self):
        return {"model_path": self.model_path, "_processor": None}

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

    def sha256(self) -> str:
        return hashlib.sha256(Path(self.model_path).read_bytes()).hexdigest()

    def pieces(self) -> list[str]:
        by_id = {i: token for token, i in self.processor.get_vocab(with_added_tokens=True).items()}
        return [by_id.get(i, "") for i in range(self.vocab_size)]

    def char_lengths(self) -> np.ndarray:
        """Characters each id contributes: UTF-8 lead bytes of its bytes; special tokens 0."""
        return self._lengths(lambda data: sum(1 for byte in data if not 0x80 <= byte < 0xC0), len)

    def byte_lengths(self) -> np.ndarray:
        """UTF-8 bytes each id contributes to decoded text; special tokens 0."""
        return self._lengths(len, lambda text: len(text.encode("utf-8")))

    def _lengths(self, of_bytes, of_text) -> np.ndarray:
        """Per id: `of_bytes` of the bytes a token in GPT-2's byte alphabet stands for, `of_text` of an added
        plain-text token (not in that alphabet); special tokens 0."""
        from transformers.convert_slow_tokenizer import bytes_to_unicode  # GPT-2's byte alphabet

        byte_of = {char: byte for byte, char in bytes_to_unicode().items()}
        specials = {t.content for t in self.processor.get_added_tokens_decoder().values() if t.special}
        lengths = np.zeros(self.vocab_size, dtype=np.int64)
        for token, token_id in self.processor.get_vocab(with_added_tokens=True).items():
            if token in specials:
                continue
            in_alphabet = all(c in byte_of for c in token)
            lengths[token_id] = of_bytes([byte_of[c] for c in token]) if in_alphabet else of_text(token)
        return lengths
