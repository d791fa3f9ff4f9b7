"""`resize` for a byte-level BPE tokenizer (tokenizer/merge.py's output for SmolLM2 or Llama-3).

The merged tokenizer.json must keep every base token (model vocabulary and special tokens) at its id;
the model must have one row per base id (Llama-3: 128,000 BPE tokens + 256 special = 128,256 rows).
FVT spells each new token through the base's BPE (`checkpoints/vocab_init.byte_level_sources`).
"""

from __future__ import annotations

import json
from pathlib import Path

from checkpoints.vocab_init import NewPiece, byte_level_sources
from stagekit.errors import BadInput


def _load(path: Path, what: str):
    from tokenizers import Tokenizer

    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise BadInput(f"{path}: no tokenizer.json ({what} must be a byte-level BPE tokenizer like the merged one)")
    try:
        text = file.read_text(encoding="utf-8")
        tokenizer = Tokenizer.from_str(text)
    except (OSError, UnicodeDecodeError, Exception) as exc:  # tokenizers raises a bare Exception on bad JSON
        raise BadInput(f"{file}: not a tokenizer.json ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if type(tokenizer.model).__name__ != "BPE":
        raise BadInput(f"{file}: not a BPE tokenizer.json")
    return text, tokenizer, file


def byte_level_new_pieces(config, model_path: Path, tokenizer_dir: Path, old_vocab: int, rows_may_exceed_ids: bool = False
                          ) -> tuple[int, int, list[NewPiece]]:
    """(the base tokenizer's ids, the merged vocabulary size, the new ids with their FVT sources); `config`:
    resize's ResizeJob. `rows_may_exceed_ids`: the model's family ships rows no base id reaches (Qwen2)."""
    _, merged, merged_file = _load(tokenizer_dir, "--tokenizer")
    base_text, base, base_file = _load(Path(config.base_tokenizer or model_path), "--base-tokenizer")
    base_vocab, merged_vocab = base.get_vocab(with_added_tokens=True), merged.get_vocab(with_added_tokens=True)
    base_size = 1 + max(base_vocab.values())
    if base_size != old_vocab and not (rows_may_exceed_ids and base_size < old_vocab):
        raise BadInput(f"{model_path}: the model has {old_vocab:,} vocabulary rows but the base tokenizer {base_file} has "
                       f"{base_size:,} ids; resize needs the model that tokenizer belongs to (rows == ids)")
    moved = next(((t, i) for t, i in base_vocab.items() if merged_vocab.get(t) != i), None)
    if moved:
        raise BadInput(f"{merged_file}: does not extend the model's tokenizer {base_file} "
                       f"({moved[0]!r} is id {moved[1]} there, {merged_vocab.get(moved[0])} here)")
    new_vocab = 1 + max(merged_vocab.values())
    by_id = {i: t for t, i in merged_vocab.items() if i >= base_size}
    new_ids = [(i, by_id.get(i, "")) for i in range(base_size, new_vocab)]
    if config.section.init != "fvt":
        return base_size, new_vocab, [NewPiece(i, t, ()) for i, t in new_ids]
    specials = {t["content"] for t in json.loads(merged.to_str()).get("added_tokens", [])}
    return base_size, new_vocab, byte_level_sources(new_ids, base_text, specials)
