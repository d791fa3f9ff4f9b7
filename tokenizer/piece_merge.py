"""The two merges of SentencePiece pieces into a base model, on `ModelProto`s (no files, no CLI).

`merge_safe`: only pieces absent from the base that contain Hangul (and no digit), scored strictly
below every base score in the added model's own order, so BPE applies every base merge before any
Korean one and no non-Korean text changes ids; every added piece is checked to be producible by
BPE (missing intermediates added, the rest dropped and counted). `merge_chinese_llama`:
Chinese-LLaMA's `merge_tokenizers.py` (every new piece appended with score 0), for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tokenizer import BadInput, hangul_nfc
from tokenizer.spm_reachability import unreachable
from tokenizer.spm_model import CONTROL, NORMAL, ModelProto, has_digit, is_hangul

SCRIPTS = ("hangul", "any")


@dataclass
class MergeStats:
    mode: str
    base_pieces: int
    added_model_pieces: list[int]
    added: int = 0
    skipped_already_present: int = 0
    skipped_not_script: int = 0
    skipped_digits: int = 0
    skipped_special: int = 0
    skipped_limit: int = 0
    unreachable_found: int = 0
    intermediates_added: int = 0
    unreachable_dropped: int = 0
    special_added: list[str] = field(default_factory=list)
    merged_pieces: int = 0
    hangul_nfc: bool = False
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------- scores

def scores_below(floor: float, count: int) -> list[float]:
    """`count` float32 scores, strictly decreasing, all strictly below `floor` (SentencePiece stores float32)."""
    if count == 0:
        return []
    step = 1.0
    while True:
        values = np.float32(floor) - np.float64(step) * np.arange(1, count + 1)
        as_f32 = values.astype(np.float32)
        if as_f32[0] < np.float32(floor) and np.all(np.diff(as_f32) < 0):
            return [float(v) for v in as_f32]
        step *= 2


# ---------------------------------------------------------------------------------------------- merges

def _append(proto: ModelProto, pieces: list[str], scores: list[float], piece_type=NORMAL) -> None:
    for text, score in zip(pieces, scores):
        new = proto.pieces.add()
        new.piece, new.score, new.type = text, score, piece_type


def _with_pieces(base: ModelProto, pieces: list[str], nfc: bool) -> ModelProto:
    merged = ModelProto()
    merged.CopyFrom(base)
    if nfc:
        hangul_nfc.apply(merged.normalizer_spec)
    floor = min(p.score for p in base.pieces)
    _append(merged, pieces, scores_below(floor, len(pieces)))
    merged.trainer_spec.vocab_size = len(merged.pieces)
    return merged


def _wanted(text: str, script: str) -> bool:
    return (script == "any" or any(is_hangul(c) for c in text)) and not has_digit(text)


def merge_safe(base: ModelProto, added_models: list[ModelProto], script: str = "hangul",
               max_added: int = 0, nfc: bool = False, max_rounds: int = 8) -> tuple[ModelProto, MergeStats]:
    stats = MergeStats(mode="safe", base_pieces=len(base.pieces), added_model_pieces=[len(m.pieces) for m in added_models],
                       hangul_nfc=nfc)
    base_set = {p.piece for p in base.pieces}
    candidates: dict[str, None] = {}  # ordered set, in the added models' order
    for model in added_models:
        for piece in model.pieces:
            text = piece.piece
            if piece.type != NORMAL:
                stats.skipped_special += 1
            elif text in base_set or text in candidates:
                stats.skipped_already_present += 1
            elif script == "hangul" and not any(is_hangul(c) for c in text):
                stats.skipped_not_script += 1
            elif has_digit(text):
                stats.skipped_digits += 1
            else:
                candidates[text] = None
    if max_added and len(candidates) > max_added:
        # Characters first (every piece is built from them), then pieces in the model's order.
        keep = [t for t in candidates if len(t) == 1][:max_added]
        keep += [t for t in candidates if len(t) > 1][: max_added - len(keep)]
        keep_set = set(keep)
        stats.skipped_limit = len(candidates) - len(keep_set)
        candidates = {t: None for t in candidates if t in keep_set}
    order: list[str] = []
    placed = set(base_set)
    for text in candidates:
        if text in placed:  # a character already moved forward
            continue
        # BPE starts from characters, so each character of a piece must be a piece before it. A BPE
        # model lists its characters last; move them forward (or add them, if cut by --max-added).
        missing = [c for c in dict.fromkeys(text) if c not in placed]
        if missing and len(text) > 1:
            if not all(_wanted(c, script) for c in missing):
                stats.unreachable_found += 1
                stats.unreachable_dropped += 1
                continue
            order += missing
            placed.update(missing)
            stats.intermediates_added += sum(c not in candidates for c in missing)
        order.append(text)
        placed.add(text)

    first_added = len(base.pieces)
    for round_index in range(max_rounds):
        merged = _with_pieces(base, order, nfc)
        bad = unreachable(merged, list(range(first_added, len(merged.pieces))))
        if not bad:
            break
        bad_texts = {merged.pieces[i].piece: segmentation for i, segmentation in bad.items()}
        if round_index == 0:
            stats.unreachable_found += len(bad)
        rebuilt: list[str] = []
        present = {p.piece for p in base.pieces} | set(order)
        for text in order:
            segmentation = bad_texts.get(text)
            if segmentation is None:
                rebuilt.append(text)
                continue
            # One repair attempt: the left-to-right chain of intermediates t1t2, t1t2t3, ... lets BPE
            # walk from the segmentation it stops at to the piece.
            chain = ["".join(segmentation[:k]) for k in range(2, len(segmentation))]
            repairable = round_index == 0 and not any(s.startswith("<0x") for s in segmentation) and all(
                _wanted(c, script) for c in chain if c not in present)
            if repairable:
                new = [c for c in chain if c not in present]
                rebuilt += new
                present.update(new)
                stats.intermediates_added += len(new)
                rebuilt.append(text)
            else:
                stats.unreachable_dropped += 1
        order = rebuilt
    else:
        raise RuntimeError("reachability repair did not converge")  # cannot happen: each round only drops
    stats.added = len(order)
    stats.merged_pieces = len(merged.pieces)
    return merged, stats


def merge_chinese_llama(base: ModelProto, added_models: list[ModelProto]) -> tuple[ModelProto, MergeStats]:
    """Chinese-LLaMA's rule, verbatim: every piece not in the base appended with score 0.

    Like their script it keeps `trainer_spec.vocab_size` as it was (one of the defects we measure).
    """
    stats = MergeStats(mode="chinese-llama", base_pieces=len(base.pieces),
                       added_model_pieces=[len(m.pieces) for m in added_models])
    merged = ModelProto()
    merged.CopyFrom(base)
    present = {p.piece for p in base.pieces}
    for model in added_models:
        for piece in model.pieces:
            if piece.piece in present:
                stats.skipped_already_present += 1
                continue
            new = merged.pieces.add()
            new.piece, new.score = piece.piece, 0
            present.add(piece.piece)
            stats.added += 1
    stats.merged_pieces = len(merged.pieces)
    return merged, stats


def add_special(proto: ModelProto, names: list[str], stats: MergeStats) -> None:
    present = {p.piece for p in proto.pieces}
    for name in names:
        if name in present:
            raise BadInput(f"--add-special {name!r}: already a piece of the merged vocabulary")
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = name, 0.0, CONTROL
        present.add(name)
        stats.special_added.append(name)
    if stats.mode == "safe":
        proto.trainer_spec.vocab_size = len(proto.pieces)
    stats.merged_pieces = len(proto.pieces)
