"""Reading raw files in other encodings and compressions (corpus/encodings.py, corpus/records.py)."""

from __future__ import annotations

import bz2
import io
import json
import lzma

import pytest

from corpus.encodings import detect_encoding, suggest_encoding
from corpus.records import BadFile, ReadOptions, input_format, read_input
from stagekit.paths import SHARED_DATA

LINES = [line for line in (SHARED_DATA / "ko-train" / "chatbot_qa.txt").read_text(encoding="utf-8").split("\n")[:200] if line]


def read(name: str, data: bytes, **options) -> tuple[list[tuple[str, dict]], dict]:
    report: dict = {}
    return list(read_input(name, io.BytesIO(data), ReadOptions(**options), report)), report


def texts(records) -> list[str]:
    return [record["text"] for kind, record in records if kind == "doc"]


def test_detect_encoding_bom_then_utf8_then_cp949():
    text = "\n".join(LINES) + "\n"
    assert detect_encoding(text.encode("utf-8")) == "utf-8"
    assert detect_encoding(text.encode("cp949")) == "cp949"
    assert detect_encoding(b"\xef\xbb\xbf" + text.encode("utf-8")) == "utf-8"
    assert detect_encoding(text.encode("utf-16")) == "utf-16"  # Python writes a BOM
    assert suggest_encoding([line.encode("cp949") for line in LINES[:20]]) == "cp949"
    assert suggest_encoding([LINES[0].encode("utf-16-le")]) == "utf-16"


@pytest.mark.parametrize("encoding", ["cp949", "euc-kr", "auto"])
def test_cp949_lines_read_as_the_utf8_text(encoding):
    data = ("\n".join(LINES) + "\n").encode("cp949")
    records, report = read("ko/chat.txt", data, encoding=encoding)
    assert texts(records) == LINES and report == {"encoding": "euc-kr" if encoding == "euc-kr" else "cp949",
                                                 "lines": len(LINES), "undecodable": 0}


def test_cp949_read_as_utf8_is_rejected_with_a_hint():
    records, report = read("ko/chat.txt", ("\n".join(LINES) + "\n").encode("cp949"))
    reasons = {record["reason"] for kind, record in records if kind == "reject"}
    assert reasons == {"invalid_utf8"} and report["undecodable"] > 0.9 * len(LINES)
    assert report["suggested_encoding"] == "cp949"


@pytest.mark.parametrize("encoding", ["utf-16", "auto"])
def test_utf16_with_bom(encoding):
    records, report = read("ko/chat.txt", ("\r\n".join(LINES[:50]) + "\r\n").encode("utf-16"), encoding=encoding)
    assert texts(records) == LINES[:50] and report["encoding"] == "utf-16"


def test_bom_is_dropped_in_text_and_jsonl():
    records, _ = read("ko/a.txt", b"\xef\xbb\xbf" + "\n".join(LINES[:3]).encode())
    assert texts(records) == LINES[:3]
    jsonl = "".join(json.dumps({"text": line}, ensure_ascii=False) + "\n" for line in LINES[:3]).encode()
    records, _ = read("ko/a.jsonl", b"\xef\xbb\xbf" + jsonl)
    assert texts(records) == LINES[:3]


def test_bz2_and_xz_are_read_and_truncation_is_a_bad_file():
    payload = ("\n".join(LINES) + "\n").encode()
    for suffix, compress in ((".bz2", bz2.compress), (".xz", lzma.compress)):
        assert input_format(f"a.txt{suffix}") == "text" and input_format(f"a.jsonl{suffix}") == "jsonl"
        records, _ = read(f"ko/a.txt{suffix}", compress(payload))
        assert texts(records) == LINES
        with pytest.raises(BadFile, match="corrupt or truncated"):
            read(f"ko/a.txt{suffix}", compress(payload)[:-40])
    assert input_format("a.tsv") is None and input_format("a.json") is None
