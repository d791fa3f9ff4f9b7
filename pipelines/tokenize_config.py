"""The `tokenize:` section of a run config, apart from the Beam job so that reading it imports no Beam."""

from __future__ import annotations

from dataclasses import dataclass

from stagekit.errors import BadInput


@dataclass(frozen=True)
class TokenizeSection:
    """The `tokenize:` section of a run config (`--config`, `--set tokenize.KEY=VALUE`)."""

    add_bos: bool = True  # Llama-2 saw BOS at every document start
    append_eod: bool = True  # EOD separates the documents GPTDataset packs into one sequence
    batch_size: int = 256  # documents per sentencepiece call

    def validate(self) -> None:
        if self.batch_size < 1:
            raise BadInput(f"tokenize.batch_size must be >= 1, got {self.batch_size}")
