"""The fast corpus functions give exactly what the old ones gave (issue 22: speed with every output
byte unchanged). The old ones are kept verbatim in `tests/corpus_reference/` (commit 377cd2f).

Checked on all of ko-train (every line a document, and multi-line documents built from it), on edge
cases (empty, whitespace only, emoji and other characters outside the BMP, jamo, mixed scripts,
mojibake, lone surrogates, very long and very repetitive texts) and on random strings drawn from
alphabets of the characters each function treats specially.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from corpus import clean, filters, minhash, normalize, pii
from stagekit.paths import KO_TRAIN
from tests.support.corpus_reference import clean_v1, filters_v1, minhash_v1, normalize_v1, pii_v1

# Old == new on all of ko-train and 20K-100K fuzzed strings per function: about 80 s, so the integration tier.
pytestmark = pytest.mark.slow

EDGE = [
    "", " ", "\n", "\n\n\n", " \t\u3000\u00a0\n \r\n\u2028 ", "가", "ㅋ", "ㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋ",
    "😀😀😀😀😀 안녕하세요 😀😀😀 𝕏𝕏𝕏 한국어 텍스트입니다 𠀀𠀁 🇰🇷",
    "😀" * 50, "𝕏 𝕏 𝕏 𝕏 𝕏 𝕏 𝕏 가나다라마바사아자차카타",
    "한국어 jamo ᄒ ᅡ ᆫ ᄀᄀᄀᄀᄀᄀᄀᄀᄀ ㅎㅏㄴ ꥠꥡ ힰힱ 가나다",
    "\u1112\u1161\u11ab\u1100\u1173\u11af 조합형 한글 (NFD) 문장입니다 여기",
    "abcabcabcabcabcabcabc 가나다", "Ã¬Â•ÂˆÃ«Â…Â• 안녕하세요 여러분 ìëíì",
    "a\ud800b 가나다라마바사아자차카타파하 \udfff",
    "한국어와 English, 中文 and Русский 混合 텍스트 1234 !!! ١٢٣ ０１２",
    "연락처: 010-1234-5678, 02)123-4567, +82 10-1234-5678, test.user+tag@example.co.kr으로 보내세요",
    "주민번호 900101-1234567 카드 4111 1111 1111 1111 아이피 192.168.0.1 버전 1.2.3.4편",
    "가" * 100_001, "가나" * 60_000, "가나다 " * 30_000, "하하하하하하하하하하하하하하하하하하하하 좋다",
    "좋아요\n좋아요\n좋아요\n다른 줄입니다 여기는", "\n\n좋아요\n\n\n\n좋아요\n\n",
    "!!!???... ~~~ *** ### ___ 가나다라", "________________ 가나다라마바사",
    "\x00\x01\x1c\x7f\x85\x9f\u200b\ufeff\u00ad 보이지 않는 문자 \u202e\u2066",
]


def ko_train_texts() -> list[str]:
    lines = []
    for path in sorted(KO_TRAIN.glob("*.txt")):
        lines.extend(path.read_text(encoding="utf-8").splitlines())
    if not lines:
        pytest.skip("the shared ko-train data is missing")
    rng = random.Random(22)
    nonblank = [line for line in lines if line.strip()]
    documents = ["\n".join(rng.choice(nonblank) for _ in range(rng.randint(5, 20))) for _ in range(2_000)]
    return lines + documents


@pytest.fixture(scope="module")
def real() -> list[str]:
    return ko_train_texts()


def fuzz(alphabet: list[str], count: int, longest: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, longest))) for _ in range(count)]


SPACES = list(" \t\n\r\x0b\x0c\x85\u2028\u2029\u00a0\u1680\u2000\u2001\u200a\u202f\u205f\u3000\x1c\x1f") + ["\r\n", "  "]
INVISIBLE = list("\x00\x08\x7f\x80\x9f\u200b\u200d\ufeff\u00ad\u180e\u202e\u2069")
LETTERS = list("aZé가힣한\u0301ㅋㅠ中Ж_!?.·×😀𝕏\ud800١３")


def test_flag_table_is_the_regexes():
    """Every BMP character's flags are exactly what each character-class regex says about it."""
    for bit, pattern in enumerate(filters._CLASSES):
        expected = [pattern.fullmatch(char) is not None for char in filters._BMP]
        assert (((filters._FLAGS >> bit) & 1) == 1).tolist() == expected, pattern.pattern


def test_normalize_identical(real):
    texts = real + EDGE + fuzz(SPACES + INVISIBLE + LETTERS + ["\n\n\n"], 100_000, 30, 1)
    for text in texts:
        assert normalize.normalize_text(text) == normalize_v1.normalize_text(text), repr(text[:80])


def test_scrub_pii_identical(real):
    pieces = list("0123456789" * 3 + "-. @+()_%가a\nx١３") + [
        "010", "+82", "02", "(0)", ".com", "@ex.kr", "1234", "9001011234567", "4111 1111 1111 1111", "192.168", "(02)"]
    texts = real + EDGE + fuzz(pieces, 100_000, 25, 2)
    for text in texts:
        assert pii.scrub_pii(text) == pii_v1.scrub_pii(text), repr(text[:80])


FILTERS = ("syllable_count", "hangul_share", "symbol_ratio", "mojibake_ratio", "duplicate_line_chars")


def test_filters_identical(real):
    rng = random.Random(3)
    repetitive = ["".join(rng.choice(["가나", "다", "ㅋㅋ", " ", "\n", "abc", "😀", "!"]) for _ in range(rng.randint(5, 60)))
                  for _ in range(5_000)]
    texts = real + EDGE + repetitive + fuzz(SPACES + INVISIBLE + LETTERS, 30_000, 40, 4)
    configs = [filters.QualityConfig(), filters.QualityConfig(top_ngram_size=1, max_top_ngram_chars=0.1),
               filters.QualityConfig(top_ngram_size=5, max_top_ngram_chars=0.2, top_ngram_min_chars=0)]
    reasons = set()
    for text in texts:
        for config in configs:
            old_config = filters_v1.QualityConfig(**config.__dict__)
            reason = filters.quality_drop_reason(text, config)
            assert reason == filters_v1.quality_drop_reason(text, old_config), (repr(text[:80]), config)
            reasons.add(reason)
    for text in real[::4] + EDGE + repetitive[:1000] + fuzz(SPACES + INVISIBLE + LETTERS, 5_000, 40, 5):
        for name in FILTERS:
            assert getattr(filters, name)(text) == getattr(filters_v1, name)(text), (name, repr(text[:80]))
    assert {"repetition", "symbols", "low_hangul", "too_short", "too_long", "mojibake", "too_few_syllables",
            "duplicate_lines", None} <= reasons  # every rule decided some text


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_top_ngram_chars_identical(real, n):
    rng = random.Random(n)
    repetitive = ["".join(rng.choice(["가나", "다", "ㅋ", " ", "ab", "😀"]) for _ in range(rng.randint(0, 40)))
                  for _ in range(3_000)]
    for text in real[::7] + EDGE + repetitive:
        assert filters.top_ngram_chars(text, n) == filters_v1.top_ngram_chars(text, n), repr(text[:80])


def test_clean_document_identical(real):
    quality = filters.QualityConfig()
    for number, text in enumerate(real + EDGE):
        doc = {"id": f"d{number}", "text": text, "source": "ko-train", "meta": {"k": 1}}
        for scrub in (True, False) if number % 8 == 0 else (True,):
            assert clean.clean_document(doc, quality, scrub) == clean_v1.clean_document(doc, quality, scrub)


def test_minhash_identical(real):
    valid = [text for text in EDGE if "\ud800" not in text]  # UTF-32 refuses lone surrogates, old and new
    short = fuzz(SPACES + LETTERS[:-3], 20_000, 8, 5)  # many texts shorter than the n-gram
    for text in short + EDGE + real[:3000] + fuzz(SPACES + LETTERS, 20_000, 40, 7):
        assert minhash.canonical_text(text) == minhash_v1.canonical_text(text), repr(text)
    rng = random.Random(6)
    mixed = real[:4_000] + valid + short[:4_000]
    rng.shuffle(mixed)
    for ngram in (1, 3, 5, 7):
        for batch in (mixed, short[:500], ["", ""], ["a"], [], ["abcd", "", "abcdefgh"]):
            new, old = minhash._batch_shingle_hashes(batch, ngram), minhash_v1._batch_shingle_hashes(batch, ngram)
            assert np.array_equal(new[0], old[0]) and np.array_equal(new[1], old[1]), ngram
    for config, chunk in ((minhash.MinHashConfig(), 8192), (minhash.MinHashConfig(ngram=3, bands=4, rows=3, seed=7), 100)):
        old_config = minhash_v1.MinHashConfig(**config.__dict__)
        for start in range(0, len(mixed), 2000):
            batch = mixed[start : start + 2000]
            new = minhash.MinHasher(config, chunk).signatures(batch)
            old = minhash_v1.MinHasher(old_config, chunk).signatures(batch)
            assert new.dtype == old.dtype and np.array_equal(new, old)
