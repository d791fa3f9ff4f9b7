"""`--hangul-nfc`: a normalizer that composes conjoining Hangul jamo into syllables and touches nothing else.

NFD Korean (macOS file names and text) spells 한 as ᄒ+ᅡ+ᆫ; Llama's identity normalizer then sees three
rare jamo instead of one syllable. Full NFC would also compose Latin accents, CJK compatibility
ideographs etc., changing the ids of non-Korean text. These rules do exactly the Hangul part of
Unicode canonical composition (UAX #15, "Hangul syllable composition"):

    L V    -> LV syllable        (19 x 21)
    L V T  -> LVT syllable       (19 x 21 x 27)
    LV T   -> LVT syllable       (precomposed LV syllable followed by a trailing jamo)

SentencePiece compiles them (trainer flag `normalization_rule_tsv`) into the model's
`normalizer_spec.precompiled_charsmap`, applied by longest match. Hugging Face `tokenizers` cannot
apply that charsmap the same way (its `Precompiled` normalizer looks up whole grapheme clusters
under 6 bytes, then single characters, so L+V never matches), so `tokenizer.json` gets the same
rules as plain string replacements: first L+V, then LV+T. That is exact but slower
(~10 ms per 140-character line) than SentencePiece.
"""

from __future__ import annotations

import functools
import io
import tempfile
from pathlib import Path

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2
from tokenizers import normalizers

S_BASE, L_BASE, V_BASE, T_BASE = 0xAC00, 0x1100, 0x1161, 0x11A7
L_COUNT, V_COUNT, T_COUNT = 19, 21, 28  # T_COUNT counts "no trailing consonant"
NORMALIZER_NAME = "identity_hangul_nfc"


def lv_pairs() -> list[tuple[str, str]]:
    """(L+V jamo, LV syllable) for all 399 modern pairs."""
    return [
        (chr(L_BASE + l) + chr(V_BASE + v), chr(S_BASE + (l * V_COUNT + v) * T_COUNT))
        for l in range(L_COUNT) for v in range(V_COUNT)
    ]


def rules() -> list[tuple[str, str]]:
    """Every (source, target) rule: L V, L V T and LV-syllable T."""
    out = []
    for source, syllable in lv_pairs():
        out.append((source, syllable))
        for t in range(1, T_COUNT):
            target = chr(ord(syllable) + t)
            out.append((source + chr(T_BASE + t), target))
            out.append((syllable + chr(T_BASE + t), target))
    return out


@functools.lru_cache(maxsize=1)
def precompiled_charsmap() -> bytes:
    """The rules compiled by SentencePiece's own trainer into a `precompiled_charsmap`."""
    lines = [" ".join(f"{ord(c):X}" for c in source) + "\t" + " ".join(f"{ord(c):X}" for c in target)
             for source, target in rules()]
    with tempfile.TemporaryDirectory(prefix="hangul-nfc-") as tmp:
        tsv = Path(tmp) / "hangul_nfc.tsv"
        tsv.write_text("\n".join(lines) + "\n", encoding="utf-8")
        model = io.BytesIO()
        # A throwaway model: only its normalizer_spec is kept.
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(["a b c"] * 4), model_writer=model, model_type="char", vocab_size=8,
            hard_vocab_limit=False, normalization_rule_tsv=str(tsv), minloglevel=2,
        )
    proto = model_pb2.ModelProto()
    proto.ParseFromString(model.getvalue())
    return proto.normalizer_spec.precompiled_charsmap


def apply(normalizer_spec: model_pb2.NormalizerSpec) -> None:
    """Turn an identity normalizer into identity + Hangul composition (other fields unchanged)."""
    normalizer_spec.precompiled_charsmap = precompiled_charsmap()
    normalizer_spec.name = NORMALIZER_NAME


def hf_normalizer(charsmap: bytes) -> normalizers.Normalizer:
    """The `tokenizers` normalizer for a model's charsmap: our rules as replacements, else `Precompiled`."""
    if charsmap != precompiled_charsmap():
        return normalizers.Precompiled(charsmap)
    compose_lv = [normalizers.Replace(source, target) for source, target in lv_pairs()]
    compose_t = [
        normalizers.Replace(syllable + chr(T_BASE + t), chr(ord(syllable) + t))
        for _, syllable in lv_pairs() for t in range(1, T_COUNT)
    ]
    return normalizers.Sequence(compose_lv + compose_t)
