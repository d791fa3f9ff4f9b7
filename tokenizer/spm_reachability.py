"""Which pieces BPE can actually produce.

A BPE piece is reachable when encoding its own text yields exactly that piece. If it does not, no
context can produce it either: merges inside the span only happen as they would in isolation, unless
a merge across the span's border takes characters away. Chinese-LLaMA's merge leaves hundreds of such
dead rows (they are still trained as embeddings and waste the vocabulary).
"""

from __future__ import annotations

import sentencepiece as spm

from tokenizer.spm_model import SPACE, ModelProto


def segment_pieces(proto: ModelProto, indices: list[int]) -> dict[int, list[str]]:
    """For each piece index, how the model segments the piece's own text (as pieces)."""
    probe = ModelProto()
    probe.CopyFrom(proto)
    # No dummy prefix: a piece without a leading "▁" must be encoded without one.
    probe.normalizer_spec.add_dummy_prefix = False
    processor = spm.SentencePieceProcessor(model_proto=probe.SerializeToString())
    texts = [proto.pieces[i].piece.replace(SPACE, " ") for i in indices]
    segmented = processor.encode(texts, out_type=str) if texts else []
    return dict(zip(indices, segmented))


def unreachable(proto: ModelProto, indices: list[int]) -> dict[int, list[str]]:
    """The pieces among `indices` that BPE cannot produce, with the segmentation it gives instead."""
    return {i: pieces for i, pieces in segment_pieces(proto, indices).items() if pieces != [proto.pieces[i].piece]}
