"""A model and a tokenizer checked against each other wherever both are given (convert, eval,
pretrain; export reads the model's own): a mismatched pair fails in one line instead of shipping
a model whose rows mean other pieces.

Two checks:
- rows vs ids: one row per id, plus padding only as it is made here: `resize --pad-to-multiple N`
  (its pad ids listed in the generation config's `suppress_tokens`) or Megatron's
  `make_vocab_size_divisible_by × TP`;
- pieces: the tokenizer's pieces equal, id for id, those of the tokenizer the model was made with
  (the one shipped in its directory, or the fingerprint its Megatron checkpoint recorded).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tokenizer import BadInput
from tokenizer.family import family_of
from tokenizer.token_encoder import TokenEncoder

# Multiples a vocabulary is padded to: powers of two (resize --pad-to-multiple, GPU-friendly sizes)
# and Megatron's make_vocab_size_divisible_by (128) × TP up to 64.
PAD_MULTIPLES = sorted({2**k for k in range(1, 14)} | {128 * t for t in range(1, 65)})


def padding_explains(rows: int, ids: int) -> bool:
    """True when `rows` is `ids` padded up to one of the usual multiples (or equal)."""
    return rows == ids or (rows > ids and any(-(-ids // m) * m == rows for m in PAD_MULTIPLES))


def check_rows(rows: int, ids: int, *, model: object, tokenizer: object, suppressed: list[int] | None = None) -> None:
    """Refuse a tokenizer whose id count the model's rows cannot stand for.

    `suppressed`: the model's generation_config `suppress_tokens` (resize lists its pad rows there),
    which then must be exactly the rows past the tokenizer's ids.
    """
    if ids > rows:
        raise BadInput(f"{tokenizer}: the tokenizer has {ids:,} ids but the model {model} only {rows:,} rows "
                       "(wrong tokenizer for this model?)")
    if rows == ids:
        return
    if suppressed and sorted(suppressed) == list(range(rows - len(suppressed), rows)) and rows - len(suppressed) == ids:
        return
    if padding_explains(rows, ids):
        return
    raise BadInput(f"{tokenizer}: {ids:,} ids, but the model {model} has {rows:,} rows, which no vocabulary padding "
                   "explains (wrong tokenizer for this model?)")


def _encoder(tokenizer: str | Path | TokenEncoder) -> TokenEncoder:
    return TokenEncoder.load(tokenizer) if isinstance(tokenizer, (str, Path)) else tokenizer


def _name(tokenizer: str | Path | TokenEncoder) -> str:
    return str(tokenizer) if isinstance(tokenizer, (str, Path)) else tokenizer.model_path


def _pieces_sha256(pieces: list[str]) -> str:
    return hashlib.sha256(json.dumps(pieces, ensure_ascii=False).encode("utf-8")).hexdigest()


def fingerprint(tokenizer: str | Path | TokenEncoder) -> dict:
    """What a checkpoint records of the tokenizer it was made with (a path, or one already loaded)."""
    encoder = _encoder(tokenizer)
    pieces = encoder.pieces()
    return {"ids": len(pieces), "pieces_sha256": _pieces_sha256(pieces), "bos_id": encoder.bos_id, "eos_id": encoder.eos_id}


def has_tokenizer(directory: str | Path) -> bool:
    """A directory holding a tokenizer of either family (a model directory may ship one)."""
    if not Path(directory).is_dir():
        return False
    try:
        family_of(directory)
    except BadInput:
        return False
    return True


def check_matches_fingerprint(tokenizer: str | Path | TokenEncoder, recorded: dict | None, *, model: object) -> None:
    """The tokenizer's pieces equal those the model's checkpoint recorded (no record: nothing to check)."""
    if not recorded:
        return
    found = fingerprint(tokenizer)
    if found["ids"] != recorded["ids"] or found["pieces_sha256"] != recorded["pieces_sha256"]:
        raise BadInput(f"{_name(tokenizer)}: not the tokenizer {model} was made with ({found['ids']:,} ids vs "
                       f"{recorded['ids']:,}, pieces {'differ' if found['ids'] == recorded['ids'] else 'and sizes differ'})")


def check_same_pieces(tokenizer: str | Path | TokenEncoder, reference: str | Path, *, model: object) -> None:
    """The tokenizer's pieces equal, id for id, those of the tokenizer shipped with the model."""
    given, own = _encoder(tokenizer).pieces(), TokenEncoder.load(reference).pieces()
    first = next((i for i, (a, b) in enumerate(zip(given, own)) if a != b), None)
    if first is not None:
        raise BadInput(f"{_name(tokenizer)}: its id {first} is {given[first]!r} but {model}'s own tokenizer has "
                       f"{own[first]!r} there (a tokenizer of another base?)")
    if len(given) != len(own):
        raise BadInput(f"{_name(tokenizer)}: {len(given):,} ids, {model}'s own tokenizer {len(own):,}: not the same tokenizer")
