"""The spill runs that keep the full text off the corpus job's shuffles (`corpus.spill`), pure functions."""

from __future__ import annotations

import io
import random

import numpy as np
import pyarrow.parquet as pq

from corpus.clean import text_key
from corpus.index import IndexWriter, encode_index, tag_previous
from corpus.minhash import MinHashConfig, MinHasher, band_hashes
from corpus.spill import (
    DropList,
    decode_table,
    doc_line,
    encode_run,
    exact_batches,
    exact_drops,
    iter_run,
    merge_runs,
)


def rows_of(texts: dict[str, str], width: int = 0) -> list[tuple[str, str, str, bytes]]:
    return [(doc_id, doc_line({"id": doc_id, "text": text}), text_key(text), bytes([len(doc_id)]) * width)
            for doc_id, text in texts.items()]


def run_stream(rows, width: int = 0):
    docs, table, signatures = encode_run(rows)
    ids, keys = decode_table(table)
    return iter_run(ids, keys, io.BytesIO(docs), io.BytesIO(signatures), width, chunk=3)


def test_merged_runs_are_sorted_and_the_same_for_any_split_into_runs():
    texts = {f"doc-{number:04d}": f"텍스트 {number % 37}" for number in range(500)}
    rows = rows_of(texts, width=8)
    whole = list(merge_runs([run_stream(rows, 8)]))
    assert [row[0] for row in whole] == sorted(texts)
    assert all(row[3] == bytes([len(row[0])]) * 8 for row in whole)  # signatures stay with their rows
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    split = [run_stream(shuffled[start : start + 71], 8) for start in range(0, len(shuffled), 71)]
    assert list(merge_runs(split)) == whole


def test_exact_drops_keep_the_smallest_id_across_batches_and_partitions():
    docs = {"b": "같은 글", "a": "같은 글", "c": "다른 글", "d": "같은 글", "e": "다른 글", "f": "혼자"}
    keys = {doc_id: text_key(text) for doc_id, text in docs.items()}
    drops = []
    for partitions in (1, 3):
        elements = [element for batch in (["b", "a", "c"], ["d", "e", "f"])
                    for element in exact_batches([keys[i] for i in batch], batch, partitions)]
        by_partition: dict[int, list] = {}
        for partition, blob in elements:
            by_partition.setdefault(partition, []).append(blob)
        drops.append(sorted(drop for blobs in by_partition.values() for drop in exact_drops(blobs)))
    assert drops[0] == drops[1] == [
        ("b", keys["a"][:32], "a", "exact_duplicate"),
        ("d", keys["a"][:32], "a", "exact_duplicate"),
        ("e", keys["c"][:32], "c", "exact_duplicate"),
    ]


def test_a_text_an_earlier_output_holds_drops_every_new_copy():
    key = text_key("예전 글")
    blobs = [blob for _, blob in exact_batches([key, key, key], ["new-2", tag_previous("old-9"), "new-1"], 1)]
    assert sorted(exact_drops(blobs)) == [("new-1", key[:32], "old-9", "exact_duplicate_of_previous"),
                                          ("new-2", key[:32], "old-9", "exact_duplicate_of_previous")]
    assert list(exact_drops([blob for _, blob in exact_batches([key, key], ["x", "y"], 1)], within=False)) == []


def test_drop_list_counts_repeated_ids_and_prefers_earlier_outputs():
    drops = DropList([("x", ("a", "exact_duplicate", "ab" * 16)), ("y", ("a", "near_duplicate", None)),
                      ("y", ("old", "near_duplicate_of_previous", None))])
    assert drops.take("x", "ab" * 32) == ("a", "exact_duplicate")
    assert drops.take("x", "ab" * 32) is None  # one copy of a repeated (id, text) was a duplicate, not both
    assert drops.take("x", "cd" * 32) is None
    assert drops.take("y", "ef" * 32) == ("old", "near_duplicate_of_previous")


def test_streamed_index_equals_the_one_shot_index():
    config = MinHashConfig()
    texts = [f"문서 {number} 내용은 조금씩 다르다 {number * 7}" for number in range(20_000)]
    signatures = MinHasher(config).signatures(texts)
    ids = [f"id-{number:06d}" for number in range(len(texts))]
    sink = io.BytesIO()
    writer = IndexWriter(sink, config.bands, config.rows)
    for doc_id, text, signature in zip(ids, texts, signatures):
        writer.add(doc_id, text_key(text), signature.tobytes())
    writer.close()
    streamed = pq.read_table(io.BytesIO(sink.getvalue())).to_pylist()
    bands = band_hashes(signatures, config.bands, config.rows)
    expected = [(doc_id, text_key(text), bands[i], signatures[i].tobytes()) for i, (doc_id, text) in enumerate(zip(ids, texts))]
    assert streamed == pq.read_table(io.BytesIO(encode_index(expected))).to_pylist()
    assert np.array_equal(np.array(streamed[5]["bands"], dtype=np.uint64), bands[5])
