"""Input checks of the merge: what `--base` and `--add` must be, and that the merge adds something.

Each raises `BadInput` with one line that names the file and says why.
"""

from __future__ import annotations

from pathlib import Path

from tokenizer import BadInput
from tokenizer.spm_hf_export import byte_pieces_ok
from tokenizer.spm_model import BPE, ModelProto, model_type_name


def check_base(proto: ModelProto, path: str | Path) -> None:
    if proto.trainer_spec.model_type != BPE:
        raise BadInput(f"{path}: base is a {model_type_name(proto)} model; the merge needs a SentencePiece BPE base "
                       "with byte_fallback (like Llama-2's tokenizer.model)")
    if not proto.trainer_spec.byte_fallback or not byte_pieces_ok(proto):
        raise BadInput(f"{path}: base has no byte fallback (byte_fallback off or <0x00>..<0xFF> pieces missing); "
                       "Korean text it cannot cover would become <unk>")


def normalizer_signature(proto: ModelProto) -> tuple:
    spec = proto.normalizer_spec
    return (spec.name, spec.precompiled_charsmap, spec.add_dummy_prefix, spec.remove_extra_whitespaces,
            spec.escape_whitespaces)


def check_added(proto: ModelProto, path: str | Path, base: ModelProto) -> None:
    """An added model must see text the way the base does, or its pieces may never match."""
    mine, theirs = proto.normalizer_spec, base.normalizer_spec
    if normalizer_signature(proto) != normalizer_signature(base):
        what = []
        if (mine.name, mine.precompiled_charsmap) != (theirs.name, theirs.precompiled_charsmap):
            what.append(f"normalizer {mine.name!r} vs the base's {theirs.name!r}: its pieces were learned on "
                        f"{mine.name}-normalized text (e.g. NFKC turns ㅋ U+314B into ᄏ U+110F), which the base's "
                        "input never contains, so such pieces would never match")
        if mine.add_dummy_prefix != theirs.add_dummy_prefix:
            what.append(f"add_dummy_prefix={mine.add_dummy_prefix} vs {theirs.add_dummy_prefix} (word-initial '▁' pieces differ)")
        if mine.remove_extra_whitespaces != theirs.remove_extra_whitespaces:
            what.append(f"remove_extra_whitespaces={mine.remove_extra_whitespaces} vs {theirs.remove_extra_whitespaces}")
        if mine.escape_whitespaces != theirs.escape_whitespaces:
            what.append(f"escape_whitespaces={mine.escape_whitespaces} vs {theirs.escape_whitespaces}")
        raise BadInput(f"{path}: added model's normalizer differs from the base's: {'; '.join(what)}. "
                       "Retrain it with tokenizer/train.py (identity normalization) or pass --allow-normalizer-mismatch")


def check_added_size(proto: ModelProto, path: str | Path, base: ModelProto, base_path: str | Path) -> None:
    """The base is the model being extended; a smaller one means --base and --add are swapped."""
    if len(proto.pieces) > len(base.pieces):
        raise BadInput(f"{base_path}: base has {len(base.pieces):,} pieces, fewer than the {len(proto.pieces):,} of "
                       f"--add {path}; --base must be the model being extended (e.g. Llama-2's tokenizer.model): "
                       "are --base and --add swapped?")


def check_added_type(proto: ModelProto, path: str | Path, mode: str) -> None:
    """Safe mode appends pieces as BPE merges; a unigram model's pieces are not merges of each other."""
    if proto.trainer_spec.model_type != BPE and mode != "chinese-llama":
        raise BadInput(f"{path}: --add is a {model_type_name(proto)} model; the merge needs BPE pieces (a unigram "
                       "model's pieces are not BPE merges, so many can never be produced by the merged BPE). "
                       "Train one with tokenizer/train.py, or pass --mode chinese-llama to reproduce that project's merge")


def check_adds_something(stats, paths: list[str]) -> None:
    """`stats`: the merge's MergeStats."""
    if stats.added == 0:
        raise BadInput(f"nothing to add: every piece of {', '.join(map(str, paths))} is already in the base or was "
                       f"filtered out (present {stats.skipped_already_present:,}, other script "
                       f"{stats.skipped_not_script:,}, digits {stats.skipped_digits:,}, special {stats.skipped_special:,}, "
                       f"unreachable {stats.unreachable_dropped:,})")
