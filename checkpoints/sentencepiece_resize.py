"""`resize` for a SentencePiece tokenizer (Llama-2, Mistral: tokenizer/merge.py's output for them).

The merged tokenizer.model must keep every base piece at its id, and the model must have one row per base
piece. FVT spells each new piece in the base's pieces (`checkpoints/vocab_init.fvt_sources`).
"""

from __future__ import annotations

from pathlib import Path

from checkpoints.vocab_init import NewPiece, fvt_sources
from stagekit.errors import BadInput
from tokenizer.spm_model import load_model, resolve_model_path


def load_model_proto(path: Path, what: str):
    """The SentencePiece model of a tokenizer directory or `.model` file, and the file it came from."""
    try:
        return load_model(path), resolve_model_path(path)
    except BadInput as exc:
        raise BadInput(f"{what} {exc} (it must be a SentencePiece tokenizer)") from None


def check_rows_match(model_path: Path, model_vocab: int, base, base_file: Path) -> None:
    """The model must be the one its base tokenizer belongs to: one embedding row per base piece.

    Otherwise ids past the model's rows would get made-up rows (or FVT would index past the table).
    """
    if model_vocab != len(base.pieces):
        raise BadInput(
            f"{model_path}: the model has {model_vocab:,} vocabulary rows but the base tokenizer {base_file} has "
            f"{len(base.pieces):,} pieces; resize needs the model that tokenizer belongs to (rows == pieces)"
        )


def check_extends(merged, merged_file: Path, base, base_file: Path, model_vocab: int) -> None:
    """The merged tokenizer keeps the base tokenizer's pieces at the same ids."""
    n = min(len(base.pieces), model_vocab)
    if len(merged.pieces) < n:
        raise BadInput(f"{merged_file}: {len(merged.pieces)} pieces, fewer than the base tokenizer's {n}")
    for i in range(n):
        a, b = merged.pieces[i], base.pieces[i]
        if a.piece != b.piece or a.type != b.type:
            raise BadInput(
                f"{merged_file}: the first {n:,} pieces differ from the model's tokenizer "
                f"{base_file} (id {i}: {a.piece!r} vs {b.piece!r})"
            )


def sentencepiece_new_pieces(config, model_path: Path, tokenizer_dir: Path, old_vocab: int,
                             rows_may_exceed_ids: bool = False) -> tuple[int, int, list[NewPiece]]:
    """(the base tokenizer's ids, the merged vocabulary size, the new ids with their FVT sources); `config`:
    resize's ResizeJob. SentencePiece bases have one row per piece (`rows_may_exceed_ids` does not apply)."""
    merged, merged_file = load_model_proto(tokenizer_dir, "--tokenizer")
    if len(merged.pieces) < old_vocab:
        raise BadInput(
            f"{merged_file}: tokenizer has {len(merged.pieces):,} pieces, fewer than the model's vocabulary {old_vocab:,}"
        )
    base_path = config.base_tokenizer or model_path
    if config.base_tokenizer is None and not (model_path / "tokenizer.model").is_file():
        raise BadInput(f"{model_path}: no tokenizer.model to compare the merged tokenizer with (pass --base-tokenizer)")
    base, base_file = load_model_proto(Path(base_path), "--base-tokenizer")
    check_rows_match(model_path, old_vocab, base, base_file)
    check_extends(merged, merged_file, base, base_file, old_vocab)
    new_vocab = len(merged.pieces)
    new_ids = [(i, merged.pieces[i].piece) for i in range(old_vocab, new_vocab)]
    if config.section.init == "fvt":
        return old_vocab, new_vocab, fvt_sources(new_ids, base.SerializeToString())
    return old_vocab, new_vocab, [NewPiece(i, p, ()) for i, p in new_ids]
