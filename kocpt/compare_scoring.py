"""The held-out documents of a comparison and the scoring of one model on them.

Fair between tokenizers: every document is scored whole, in one window. A window of N tokens holds
~3x more Korean characters for an expanded tokenizer, so a document that does not fit the context under
every arm's tokenizer is left out (and counted), the same documents for every arm; the first
`documents` that fit are kept, in file order. Every bits/char carries its bootstrap standard error
over documents (evaluation/bpc.py), and two arms compare by the paired difference on these documents.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from stagekit.errors import BadInput

LANGUAGES = ("korean", "english")


@dataclass
class HeldOut:
    """One language's held-out documents, as every arm scores them."""

    language: str
    file: str
    documents: list[str]
    too_long: int  # documents of the file's first ones left out: longer than the context for some arm's tokenizer
    read: int  # documents read from the file to find these

    def summary(self) -> dict:
        return {"file": self.file, "documents": len(self.documents), "characters": sum(map(len, self.documents)),
                "left_out_too_long": self.too_long, "read": self.read}


def select_documents(language: str, file: Path, tokenizers: list, context: int, wanted: int) -> HeldOut:
    """The first `wanted` documents of `file` that fit one window of `context` tokens (the prefix token
    included) under every tokenizer."""
    from evaluation.bpc import read_documents

    candidates = read_documents(file)
    chosen: list[str] = []
    too_long = read = 0
    batch = 256
    for start in range(0, len(candidates), batch):
        texts = candidates[start:start + batch]
        lengths = [tok(texts, add_special_tokens=False)["input_ids"] for tok in tokenizers]
        for index, text in enumerate(texts):
            read += 1
            if all(len(ids[index]) + 1 <= context for ids in lengths):
                chosen.append(text)
                if len(chosen) == wanted:
                    return HeldOut(language, str(file), chosen, too_long, read)
            else:
                too_long += 1
    if len(chosen) < 2:
        raise BadInput(f"{file}: {len(chosen)} of its {len(candidates)} documents fit a window of {context} tokens "
                       "for every arm's tokenizer; a standard error needs 2 or more (raise compare.context)")
    return HeldOut(language, str(file), chosen, too_long, read)


def load_tokenizer(path: Path):
    from evaluation.run import load_tokenizer as load

    return load(path)


def model_context(model_dir: Path) -> int:
    config = json.loads((model_dir / "config.json").read_text())
    return int(config.get("max_position_embeddings") or 2048)


def score_model(model_dir: Path, tokenizer_dir: Path, held_out: list[HeldOut], context: int,
                threads: int | None = None) -> dict:
    """{language: BpcResult.to_dict()} of the HF model at `model_dir` on every held-out set; `threads`: the
    CPUs to use (default all: other arms' training may share them)."""
    import torch

    from evaluation.bpc import score_texts
    from evaluation.run import load_model

    torch.set_num_threads(threads or max(1, os.cpu_count() or 1))
    model = load_model(model_dir)
    if torch.cuda.is_available():  # under SLURM the comparison's own process may hold a GPU
        model.to("cuda")
    tokenizer = load_tokenizer(tokenizer_dir)
    scores = {}
    for item in held_out:
        result = score_texts(model, tokenizer, item.documents, name=item.language, context=context,
                             stride=context - 1, progress=False)
        if result.windowed_documents:  # select_documents keeps only documents that fit: a bug if not
            raise AssertionError(f"{result.windowed_documents} {item.language} documents did not fit one window")
        scores[item.language] = result.to_dict()
    return scores
