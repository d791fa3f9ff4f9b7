"""Initial rows for new vocabulary entries: fast vocabulary transfer (FVT), mean, or random.

FVT (Gee et al., 2022): a new piece's text is what the *base* tokenizer would have produced as a
sequence of old pieces; its new input-embedding row is the mean of those old rows, so on its first
step the model sees roughly what it saw before the merge.

The LM head needs a choice, because an output row decides how likely the new token is:
- `mean` (default, FVT on the output side too): the row is the mean of the same pieces' output
  rows, so the new token's logit is the average of its pieces' logits. It underrates the new
  token a little (later pieces score low where the word starts) but never claims more mass than
  the pieces had.
- `first` (EEVE, Kim et al., 2024): the row is the output row of the first piece, so the new token
  is as likely as starting the word was. Many new tokens share a first piece (a lone '▁', or the
  first UTF-8 byte of a Hangul syllable, which Llama-2 spells in bytes), so each of them gets the
  whole probability of that piece: the mass is counted several times over.
- `calibrated`: `mean`'s rows, each then moved along one direction by a logit shift fitted on Korean
  text (`checkpoints/lm_head_calibration.py`; resize does the fit, these are its starting rows).
`benchmarks/checkpoints_bench.py` measures mean and first on Korean text: mean beat first (7.92 vs 8.63 bits per
character on held-out Korean with a small, briefly trained model), so mean is the default.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

INIT_METHODS = ("fvt", "mean", "random")
LM_HEAD_METHODS = ("mean", "first", "calibrated")
# New input rows: the init method's, or those trained by checkpoints/token_distillation.py after it.
INPUT_ROW_METHODS = ("init", "distilled")


@dataclass(frozen=True)
class NewPiece:
    id: int
    piece: str
    source_ids: tuple[int, ...]  # the base tokenizer's ids for the piece's text (FVT)


def piece_text(piece: str) -> str | bytes:
    """The text a piece stands for: '▁' is a space, '<0xNN>' is a single byte."""
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        try:
            return bytes([int(piece[3:5], 16)])
        except ValueError:
            pass
    return piece.replace("\u2581", " ")


def exact_encoder(base_model_proto: bytes):
    """A SentencePieceProcessor for the base model that encodes text exactly as given.

    The dummy prefix ('▁' prepended to every input) is turned off: a new piece without a leading
    '▁' continues a word, and must not be spelled with a space in front.
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(base_model_proto)
    proto.normalizer_spec.add_dummy_prefix = False
    return spm.SentencePieceProcessor(model_proto=proto.SerializeToString())


def fvt_sources(new_pieces: list[tuple[int, str]], base_model_proto: bytes) -> list[NewPiece]:
    """Each new piece with the base ids its text encodes to (bytes via the byte pieces)."""
    encoder = exact_encoder(base_model_proto)
    result = []
    for new_id, piece in new_pieces:
        text = piece_text(piece)
        if isinstance(text, bytes):
            ids = [encoder.piece_to_id(f"<0x{text[0]:02X}>")]
        else:
            ids = encoder.encode(text, out_type=int) if text else []
        # Unknown ids (0) carry no information: fall back to the mean row instead.
        ids = [i for i in ids if i != encoder.unk_id()]
        result.append(NewPiece(new_id, piece, tuple(ids)))
    return result


def byte_level_sources(new_pieces: list[tuple[int, str]], base_tokenizer_json: str, specials: set[str] = frozenset()
                       ) -> list[NewPiece]:
    """FVT for a byte-level BPE base (SmolLM2, Llama-3): a new token's source ids are what the base's BPE makes
    of its bytes (its byte-level spelling, merged by the base's merges; no pre-tokenizer, so a token that starts
    with a space or ends inside a UTF-8 character is spelled exactly). Special tokens (`specials`) have no text."""
    from tokenizers import Tokenizer

    base = Tokenizer.from_str(base_tokenizer_json)
    result = []
    for new_id, token in new_pieces:
        ids = () if token in specials or not token else tuple(t.id for t in base.model.tokenize(token))
        result.append(NewPiece(new_id, token, ids))
    return result


@torch.no_grad()
def new_rows(
    old: torch.Tensor,
    new: list[NewPiece],
    method: str,
    *,
    is_lm_head: bool = False,
    lm_head_method: str = "mean",
    init_std: float = 0.02,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Rows for `new` pieces computed from the old table (float32 math, old dtype out)."""
    n, h = len(new), old.shape[1]
    if n == 0:
        return old.new_empty((0, h))
    if method == "random":
        rows = torch.randn((n, h), generator=generator) * init_std
        return rows.to(old.dtype)
    mean_row = old.float().mean(0)
    if method == "mean":
        return mean_row.expand(n, h).to(old.dtype).clone()
    if method != "fvt":
        raise ValueError(f"unknown init method {method!r} (expected one of {INIT_METHODS})")
    rows = torch.empty((n, h), dtype=torch.float32)
    for k, piece in enumerate(new):
        if not piece.source_ids:
            rows[k] = mean_row
        elif is_lm_head and lm_head_method == "first":  # ("calibrated" starts from the mean)
            rows[k] = old[piece.source_ids[0]].float()
        else:
            rows[k] = old[list(piece.source_ids)].float().mean(0)
    return rows.to(old.dtype)
