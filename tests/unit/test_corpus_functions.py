"""Unit tests of the pure document functions in corpus/ (no Beam)."""

from __future__ import annotations

import io
import unicodedata

import numpy as np
import pytest
import zstandard

from corpus.clean import clean_document
from corpus.filters import (
    QualityConfig,
    duplicate_line_chars,
    hangul_share,
    mojibake_ratio,
    quality_drop_reason,
    symbol_ratio,
    top_ngram_chars,
)
from corpus.minhash import (
    MinHashConfig,
    MinHasher,
    band_hashes,
    candidate_pairs,
    canonical_text,
    connected_components,
    estimated_jaccard,
    lsh_probability,
)
from corpus.normalize import normalize_text
from corpus.pii import luhn_valid, scrub_pii
from corpus.records import BadFile, ReadOptions, read_input


# --- normalize -------------------------------------------------------------------------------
def test_nfd_hangul_becomes_nfc_syllables():
    nfd = unicodedata.normalize("NFD", "한국어 문장입니다")
    assert len(nfd) > len("한국어 문장입니다")
    assert normalize_text(nfd) == "한국어 문장입니다"


def test_compatibility_jamo_stay_as_they_are():
    # NFKC would turn ㅋ (U+314B) into the conjoining jamo U+110F; NFC must not.
    assert normalize_text("ㅋㅋㅋ 웃기다 ㅠㅠ") == "ㅋㅋㅋ 웃기다 ㅠㅠ"
    assert "\u110f" not in normalize_text("ㅋㅋ")


def test_full_width_characters_are_not_folded():
    assert normalize_text("가격：１２０００원") == "가격：１２０００원"


def test_control_and_zero_width_characters_removed_but_newline_and_tab_kept_as_space():
    text = "안녕\u200b하세요\x00\x07 반갑\ufeff습니다\t!\n다음 줄"
    assert normalize_text(text) == "안녕하세요 반갑습니다 !\n다음 줄"


def test_whitespace_normalized_without_joining_paragraphs():
    text = "  첫 문단  입니다.\r\n둘째 줄\u3000입니다.\r\n\r\n\r\n\r\n둘째 문단\u00a0입니다.  "
    assert normalize_text(text) == "첫 문단 입니다.\n둘째 줄 입니다.\n\n둘째 문단 입니다."


# --- PII -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("메일은 hong.gildong@example.co.kr 입니다", "email"),
        ("연락처 010-1234-5678 로", "phone"),
        ("휴대폰 01098765432", "phone"),
        ("서울 02-123-4567", "phone"),
        ("대표 (02)123-4567", "phone"),
        ("경기 031-123-4567", "phone"),
        ("인터넷전화 070-1234-5678", "phone"),
        ("해외에서 +82 10-9876-5432", "phone"),
        ("해외에서 +82-2-123-4567", "phone"),
        ("주민번호 900101-1234567", "rrn"),
        ("주민번호 9001011234567", "rrn"),
        ("카드 4111 1111 1111 1111", "card"),
        ("카드 5500-0000-0000-0004", "card"),
        ("카드 378282246310005", "card"),
        ("접속 IP 192.168.0.1 에서", "ip"),
    ],
)
def test_every_pii_kind_is_replaced(text, kind):
    scrubbed, counts = scrub_pii(text)
    assert counts == {kind: 1}
    assert f"<{'EMAIL' if kind == 'email' else kind.upper()}>" in scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "가격은 12,000원이고 배송비 3,000원",
        "2024-03-05 오후 3시",
        "2024.03.05 공개",
        "2024년 3월 5일",
        "버전 v1.2.3 출시",
        "주문번호 20240305-000123",
        "경기 결과 3-2 승리",
        "1.2.3.4편 모두 봤어요",
        "점유율 10.5% 상승",
        "번호 010-1234-567",  # too short for a phone number
        "주민번호처럼 보이는 901301-1234567",  # month 13
        "주민번호처럼 보이는 900230-1234567",  # 30 February
        "카드처럼 보이는 4111 1111 1111 1112",  # fails Luhn
        "대표번호 1588-1234",
        "인구 51,740,000명",
        "좌표 37.5665, 126.9780",
    ],
)
def test_lookalikes_are_not_pii(text):
    assert scrub_pii(text) == (text, {})


def test_luhn():
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


# --- filters ---------------------------------------------------------------------------------
def test_filter_metrics_on_korean():
    assert hangul_share("한국어 text") == pytest.approx(3 / 7)
    assert hangul_share("ㅋㅋㅋ") == 1.0
    assert hangul_share("12345 !!!") == 0.0
    assert symbol_ratio("안녕!!") == pytest.approx(0.5)
    assert duplicate_line_chars("가나다\n가나다\n라마바사") == pytest.approx(6 / 10)
    assert top_ngram_chars("ㅋㅋㅋㅋㅋㅋ", 3) == 1.0
    assert mojibake_ratio("ì•ˆë…•í•˜ì„¸ìš”") > 0.3
    assert mojibake_ratio("가격 3×4 · 정가") == 0.0


CONFIG = QualityConfig()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("가" * 9, "too_short"),
        ("가" * 10 + " 좋은 문장입니다", None),
        ("가" * (CONFIG.max_chars + 1), "too_long"),
        ("This is mostly English text with 한글 a little", "low_hangul"),
        ("오늘 날씨는 맑음 😀😀😀😀😀😀😀😀😀😀😀😀", "symbols"),
        ("ㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋ!!!!!!!!!!!!!!ㅋㅋㅋㅋㅋㅋㅋㅋ!!!!!!", "too_few_syllables"),
        ("같은 줄입니다\n같은 줄입니다\n같은 줄입니다\n다른 줄", "duplicate_lines"),
        ("아하하하하하하하하하하하하하하하하하하하하하하", "repetition"),
        ("ì•ˆë…•í•˜ì„¸ìš” 안녕하세요 반갑습니다", "mojibake"),
        ("정말 재미있는 영화였습니다. 배우들의 연기가 좋았어요.", None),
    ],
)
def test_quality_rules(text, reason):
    assert quality_drop_reason(text, CONFIG) == reason


def test_filter_boundaries():
    config = QualityConfig(min_chars=10, min_hangul_share=0.5, max_symbol_ratio=0.5)
    assert quality_drop_reason("가나다라마바사아자차", config) is None  # exactly 10 characters
    assert quality_drop_reason("가나다라마바사아자", config) == "too_short"
    assert quality_drop_reason("가나다라마 abcde", config) is None  # Hangul share exactly 0.5
    assert quality_drop_reason("가나다라마 abcdef", config) == "low_hangul"
    assert quality_drop_reason("가나다라마!!!!!", config) is None  # symbols exactly 0.5
    assert quality_drop_reason("가나다라마!!!!!!", config) == "symbols"
    assert quality_drop_reason("ㅋㅋㅋ 가나 ㅋㅋㅋㅋ", config) == "too_few_syllables"  # 2 syllables
    assert quality_drop_reason("ㅋㅋㅋ 가나다 ㅋㅋㅋ", config) is None  # exactly 3


def test_clean_document_chains_the_steps():
    doc = {"id": "a", "text": unicodedata.normalize("NFD", "제 번호는 010-1234-5678 입니다\u200b"), "source": "s", "meta": {}}
    cleaned, reason, pii = clean_document(doc, CONFIG)
    assert (cleaned["text"], reason, pii) == ("제 번호는 <PHONE> 입니다", None, {"phone": 1})
    assert doc["text"] != cleaned["text"]  # input untouched


# --- MinHash ---------------------------------------------------------------------------------
BASE = (
    "서울시는 다음 달부터 시내버스 노선을 개편한다고 밝혔다. 출퇴근 시간대 배차 간격을 줄이고 "
    "심야 버스를 늘리는 것이 핵심이다. 시민들은 대체로 환영하는 분위기지만 일부 노선이 없어지는 "
    "지역에서는 불만의 목소리도 나온다. 시는 다음 주 설명회를 열어 의견을 듣기로 했다."
)


def true_jaccard(a: str, b: str, n: int = 5) -> float:
    a, b = canonical_text(a), canonical_text(b)
    sa = {a[i : i + n] for i in range(len(a) - n + 1)}
    sb = {b[i : i + n] for i in range(len(b) - n + 1)}
    return len(sa & sb) / len(sa | sb)


def test_signatures_estimate_jaccard_and_batches_agree_with_single_documents():
    hasher = MinHasher(MinHashConfig())
    edited = BASE.replace("환영하는", "반기는")
    other = "부산의 한 해수욕장에서 여름 축제가 열렸다. 많은 관광객이 찾아 공연과 불꽃놀이를 즐겼다."
    texts = [BASE, edited, "", other, "짧다", BASE]
    batch = hasher.signatures(texts)
    singles = np.stack([hasher.signatures([text])[0] for text in texts])
    assert batch.dtype == np.uint32 and batch.shape == (6, 200)
    assert (batch == singles).all()
    assert (batch[0] == batch[5]).all()
    assert abs(estimated_jaccard(batch[0], batch[1]) - true_jaccard(BASE, edited)) < 0.1
    assert estimated_jaccard(batch[0], batch[3]) < 0.1
    assert (batch[2] == 0xFFFFFFFF).all()


def test_lsh_s_curve_defaults():
    config = MinHashConfig()
    assert lsh_probability(0.85, config.bands, config.rows) > 0.98
    assert lsh_probability(0.5, config.bands, config.rows) < 0.03


def verified_pairs(signatures: np.ndarray, threshold: float) -> list[tuple[str, str]]:
    """What the pipeline keeps: LSH candidates in any band whose signatures agree >= threshold."""
    config = MinHashConfig()
    ids = [chr(ord("a") + i) for i in range(len(signatures))]
    hashes = band_hashes(signatures, config.bands, config.rows)
    candidates = {pair for band in range(config.bands) for pair in candidate_pairs(hashes[:, band], ids)}
    index = {doc_id: i for i, doc_id in enumerate(ids)}
    return sorted((a, b) for a, b in candidates
                  if estimated_jaccard(signatures[index[a]], signatures[index[b]]) >= threshold)


def test_band_hashes_agree_exactly_when_a_band_agrees():
    sigs = np.arange(2 * 200, dtype=np.uint32).reshape(2, 200)
    sigs[1, :10] = sigs[0, :10]  # only band 0 identical
    hashes = band_hashes(sigs, 20, 10)
    assert hashes.shape == (2, 20) and hashes[0, 0] == hashes[1, 0] and (hashes[0, 1:] != hashes[1, 1:]).all()


def test_candidate_pairs_inside_buckets():
    hashes = np.array([5, 7, 5, 5, 9], dtype=np.uint64)
    assert sorted(candidate_pairs(hashes, ["d", "x", "b", "c", "y"])) == [("b", "c"), ("b", "d"), ("c", "d")]
    # A huge bucket: a star from the smallest id.
    assert sorted(candidate_pairs(np.zeros(20, dtype=np.uint64), [f"{i:02d}" for i in range(20)], all_pairs_below=16)) == [
        ("00", f"{i:02d}") for i in range(1, 20)
    ]


def _edit(text: str, kind: str) -> str:
    if kind == "changed":
        return text.replace("개편한다고", "바꾼다고").replace("핵심이다", "주요 내용이다")
    if kind == "inserted":
        return text.replace("밝혔다.", "밝혔다. 이번 개편은 3년 만이다.")
    return text.replace(" 시는 다음 주 설명회를 열어 의견을 듣기로 했다.", "")


@pytest.mark.parametrize("kind", ["changed", "inserted", "deleted"])
def test_planted_near_duplicates_are_found(kind):
    hasher = MinHasher(MinHashConfig())
    near = _edit(BASE, kind)
    assert 0.7 < true_jaccard(BASE, near) < 1.0
    sigs = hasher.signatures([BASE, near])
    assert verified_pairs(sigs, threshold=0.7) == [("a", "b")]


def test_distinct_documents_on_the_same_topic_are_not_merged():
    hasher = MinHasher(MinHashConfig())
    other = (
        "서울시 버스 노선 개편안에 대해 시민 단체가 우려를 표했다. 단체는 노선 축소가 교통 약자의 "
        "이동권을 침해한다고 주장했다. 시는 보완책을 마련하겠다고 답했다."
    )
    sigs = hasher.signatures([BASE, other])
    assert true_jaccard(BASE, other) < 0.2
    assert verified_pairs(sigs, threshold=0.8) == []


def test_chain_forms_one_cluster_keeping_the_smallest_id():
    # a~b and b~c but a and c are not directly similar enough: one cluster, root a.
    assert connected_components([("b", "c"), ("a", "b"), ("x", "y")]) == {"b": "a", "c": "a", "y": "x"}
    assert connected_components([("c", "d"), ("a", "b"), ("b", "d")]) == {"b": "a", "c": "a", "d": "a"}


# --- records ---------------------------------------------------------------------------------
def _read(name: str, data: bytes, **options):
    return list(read_input(name, io.BytesIO(data), ReadOptions(**options)))


def test_txt_lines_give_stable_ids_and_reject_bad_lines():
    data = "첫 문서\n\n".encode() + b"\xff\xfe broken\n" + "셋째 문서\n".encode()
    out = _read("corpus/a.txt", data)
    assert [kind for kind, _ in out] == ["doc", "reject", "reject", "doc"]
    assert out[0][1]["id"] == "corpus:a.txt:00000001"
    assert out[1][1]["reason"] == "empty"
    assert out[2][1]["reason"] == "invalid_utf8" and out[2][1]["line"] == 3
    assert out[3][1]["id"] == "corpus:a.txt:00000004"


def test_txt_paragraph_mode():
    data = "첫 문단 첫 줄\n첫 문단 둘째 줄\n\n\n둘째 문단\n".encode()
    out = _read("c/p.txt", data, txt_mode="paragraphs")
    assert [(record["id"], record["text"]) for _, record in out] == [
        ("c:p.txt:00000001", "첫 문단 첫 줄\n첫 문단 둘째 줄"),
        ("c:p.txt:00000005", "둘째 문단"),
    ]


def test_jsonl_fields_and_record_level_rejects():
    lines = [
        '{"id": 7, "text": "아이디가 있는 문서", "title": "t"}',
        '{"text": "아이디 없는 문서"}',
        '{"text": 3}',
        '{"body": "텍스트 필드 없음"}',
        '{"text": "   "}',
        "{broken json",
        "[1, 2]",
    ]
    out = _read("c/d.jsonl.zst", zstandard.ZstdCompressor().compress("\n".join(lines).encode()))
    docs = [record for kind, record in out if kind == "doc"]
    assert [doc["id"] for doc in docs] == ["7", "c:d.jsonl.zst:00000002"]
    assert docs[0]["meta"]["title"] == "t"
    assert [record["reason"] for kind, record in out if kind == "reject"] == [
        "text_not_a_string",
        "missing_text_field",
        "empty",
        "invalid_json",
        "not_an_object",
    ]


def test_text_and_id_fields_are_configurable():
    out = _read("c/d.jsonl", '{"doc_no": "x1", "body": "본문 텍스트"}\n'.encode(), text_field="body", id_field="doc_no")
    assert out == [("doc", {"id": "x1", "text": "본문 텍스트", "source": "c", "meta": {"file": "d.jsonl", "line": 1}})]


def test_truncated_compressed_files_raise_bad_file():
    payload = ("".join(f'{{"text": "문서 번호 {i} 입니다"}}\n' for i in range(5000))).encode()
    compressed = zstandard.ZstdCompressor().compress(payload)
    with pytest.raises(BadFile, match="truncated zstd"):
        _read("c/t.jsonl.zst", compressed[: len(compressed) // 2])
    import gzip

    with pytest.raises(BadFile, match="c/t.jsonl.gz"):
        _read("c/t.jsonl.gz", gzip.compress(payload)[:500])


def test_multi_frame_zstd_is_read_completely():
    cctx = zstandard.ZstdCompressor()
    data = cctx.compress("첫째 프레임 문서\n".encode()) + cctx.compress("둘째 프레임 문서\n".encode())
    assert [record["text"] for _, record in _read("c/m.txt.zst", data)] == ["첫째 프레임 문서", "둘째 프레임 문서"]
