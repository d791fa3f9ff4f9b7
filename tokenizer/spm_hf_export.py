"""The Hugging Face side of a merged tokenizer: `tokenizer.json` built from the SentencePiece model.

Why not `LlamaTokenizer`: in transformers 5 it is tokenizers-backed and rebuilds its pipeline from
vocab + merges with a `Metaspace(prepend_scheme="first")` pre-tokenizer, which drops the leading
space of texts that start with whitespace (" hi" -> "▁hi", SentencePiece gives "▁▁hi") and drops any
normalizer (so `--hangul-nfc` would be lost). We therefore write a complete `tokenizer.json` that
mirrors SentencePiece step by step and name the generic `TokenizersBackend` class in
`tokenizer_config.json`, which loads that file verbatim:

- normalizer: [hangul-nfc] -> Prepend("▁") (add_dummy_prefix) -> Replace(" ", "▁")
- model: BPE with byte_fallback, merges ranked by the SentencePiece score of the merged piece
  (SentencePiece merges the best-scoring pair first), not by id.
- decoder: "▁" -> " ", byte fallback, fuse, strip the dummy-prefix space.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
from tokenizers.models import BPE

from tokenizer.hangul_nfc import hf_normalizer as hangul_nfc_hf_normalizer
from tokenizer.spm_model import BYTE, CONTROL, NORMAL, SPACE, UNKNOWN, UNUSED, USER_DEFINED, ModelProto

MERGEABLE = (NORMAL, USER_DEFINED, UNUSED)


def bpe_merges(proto: ModelProto) -> list[tuple[str, str]]:
    """Every (left, right) pair whose concatenation is a piece, best SentencePiece score first.

    SentencePiece BPE applies the pair whose merged piece has the highest score; ties go to the
    leftmost pair. Ranking all splits of a piece by the piece's score reproduces that order.
    """
    mergeable = {p.piece: i for i, p in enumerate(proto.pieces) if p.type in MERGEABLE}
    ranked: list[tuple[float, int, int, str, str]] = []
    for index, piece in enumerate(proto.pieces):
        if piece.type not in MERGEABLE or len(piece.piece) < 2:
            continue
        text = piece.piece
        for cut in range(1, len(text)):
            left, right = text[:cut], text[cut:]
            if left in mergeable and right in mergeable:
                ranked.append((-piece.score, index, -cut, left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def special_pieces(proto: ModelProto) -> list[str]:
    return [p.piece for p in proto.pieces if p.type in (CONTROL, UNKNOWN)]


def build_tokenizer(proto: ModelProto, add_bos: bool = True) -> Tokenizer:
    """A `tokenizers.Tokenizer` that gives SentencePiece's ids on the same model."""
    spec = proto.trainer_spec
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    unk = proto.pieces[spec.unk_id].piece if spec.unk_id >= 0 else None
    model = BPE(vocab=vocab, merges=bpe_merges(proto), unk_token=unk, fuse_unk=True,
                byte_fallback=spec.byte_fallback, dropout=None)
    tokenizer = Tokenizer(model)
    steps = []
    if proto.normalizer_spec.precompiled_charsmap:
        steps.append(hangul_nfc_hf_normalizer(proto.normalizer_spec.precompiled_charsmap))
    if proto.normalizer_spec.add_dummy_prefix:
        steps.append(normalizers.Prepend(SPACE))
    steps.append(normalizers.Replace(" ", SPACE))
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = None
    decode_steps = [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if proto.normalizer_spec.add_dummy_prefix:
        decode_steps.append(decoders.Strip(content=" ", left=1, right=0))
    tokenizer.decoder = decoders.Sequence(decode_steps)
    tokenizer.add_special_tokens([AddedToken(piece, special=True, normalized=False) for piece in special_pieces(proto)])
    if add_bos and spec.bos_id >= 0:
        bos = proto.pieces[spec.bos_id].piece
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, spec.bos_id)]
        )
    return tokenizer


def tokenizer_config(proto: ModelProto, model_max_length: int = 4096) -> tuple[dict, dict]:
    """(tokenizer_config.json, special_tokens_map.json) for a Llama-style tokenizer."""
    spec = proto.trainer_spec
    named = {}
    for key, index in (("unk_token", spec.unk_id), ("bos_token", spec.bos_id), ("eos_token", spec.eos_id), ("pad_token", spec.pad_id)):
        if 0 <= index < len(proto.pieces):
            named[key] = proto.pieces[index].piece
    extra = [p for p in special_pieces(proto) if p not in named.values()]
    added_tokens_decoder = {
        str(i): {"content": p.piece, "lstrip": False, "rstrip": False, "normalized": False,
                 "single_word": False, "special": True}
        for i, p in enumerate(proto.pieces) if p.type in (CONTROL, UNKNOWN)
    }
    config = {
        # TokenizersBackend loads tokenizer.json as written (see the module docstring for why not LlamaTokenizer).
        "tokenizer_class": "TokenizersBackend",
        "add_bos_token": spec.bos_id >= 0,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "legacy": True,
        "model_max_length": model_max_length,
        "padding_side": "left",
        "added_tokens_decoder": added_tokens_decoder,
        **named,
    }
    if extra:
        config["extra_special_tokens"] = extra
    special_map = dict(named)
    if extra:
        special_map["additional_special_tokens"] = extra
    return config, special_map


def write_hf_files(proto: ModelProto, directory: Path) -> None:
    """tokenizer.json, tokenizer_config.json, special_tokens_map.json next to tokenizer.model."""
    directory = Path(directory)
    build_tokenizer(proto).save(str(directory / "tokenizer.json"))
    config, special_map = tokenizer_config(proto)
    (directory / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (directory / "special_tokens_map.json").write_text(json.dumps(special_map, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def byte_pieces_ok(proto: ModelProto) -> bool:
    """Byte fallback needs the 256 `<0xXX>` pieces that `tokenizers` looks up by that exact name."""
    names = {p.piece for p in proto.pieces if p.type == BYTE}
    return all(f"<0x{b:02X}>" in names for b in range(256))
