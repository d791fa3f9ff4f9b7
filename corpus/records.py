"""Reading raw inputs into document records, and the record format itself.

A document record is `{"id": str, "text": str, "source": str, "meta": dict}`. Reading yields
`("doc", record)` or `("reject", {...,"reason": ...})` per input record, so a bad line never stops a
job; a file that cannot be read at all (corrupt or truncated compression, a broken Parquet footer)
raises `BadFile` naming the file.

Inputs: `.txt` (one document per line, or blank-line separated paragraphs), `.jsonl`/`.ndjson`,
any of them compressed as `.gz`, `.bz2`, `.zst` or `.xz`, `.parquet`, and Hugging Face datasets (a
`save_to_disk` directory or `hf:NAME[:CONFIG][:SPLIT]`). Text and JSONL files are decoded as
`ReadOptions.encoding` (see `corpus.encodings`); a leading BOM is dropped. Everything here takes open
binary file objects, so any filesystem (local, GCS, S3 via Beam's FileSystems) can feed it.
"""

from __future__ import annotations

import fnmatch
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

from corpus.compressed import (
    COMPRESSIONS,
    READ_ERRORS,
    BadFile,
    Prepended,
    decompressed,
    lines_of,
)
from corpus.encodings import (
    SNIFF_BYTES,
    detect_encoding,
    rejection_reason,
    strip_utf8_bom,
    suggest_encoding,
    validate_encoding,
)

TEXT_SUFFIXES = tuple(".txt" + c for c in ("", *COMPRESSIONS))
# A plain `.json` may be one JSON document, not JSON lines; compressed `.json.*` dumps are JSON lines.
JSONL_SUFFIXES = tuple(b + c for b in (".jsonl", ".ndjson") for c in ("", *COMPRESSIONS)) + tuple(
    ".json" + c for c in COMPRESSIONS
)
PARQUET_SUFFIXES = (".parquet",)
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES
SUPPORTED_TYPES = ".txt, .jsonl, .ndjson (each also as .gz, .bz2, .zst, .xz), .json.gz/.bz2/.zst/.xz, .parquet"
HF_PREFIX = "hf:"


@dataclass(frozen=True)
class ReadOptions:
    text_field: str = "text"
    id_field: str = "id"
    txt_mode: str = "lines"  # "lines": one document per line; "paragraphs": blank-line separated
    # File-name patterns (fnmatch) read in paragraph mode whatever txt_mode says, so one job can
    # mix line-per-document files (comments) with blank-line separated ones (essays).
    paragraph_files: tuple[str, ...] = ()
    encoding: str = "utf-8"  # of .txt/.jsonl files: utf-8, cp949, euc-kr, utf-16 or auto (per file)

    def validate(self) -> None:
        validate_encoding(self.encoding)
        if self.txt_mode not in ("lines", "paragraphs"):
            raise ValueError(f"txt_mode must be 'lines' or 'paragraphs', got {self.txt_mode!r}")

    def txt_mode_for(self, file: str) -> str:
        if any(fnmatch.fnmatch(file, pattern) for pattern in self.paragraph_files):
            return "paragraphs"
        return self.txt_mode


def input_format(name: str) -> str | None:
    """'text', 'jsonl', 'parquet' or 'hf' for a path or spec; None when unsupported."""
    if name.startswith(HF_PREFIX):
        return "hf"
    lower = name.lower()
    if lower.endswith(TEXT_SUFFIXES):
        return "text"
    if lower.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


def source_and_file(name: str) -> tuple[str, str]:
    """`(source, file)` for ids `<source>:<file>:<line>`: the parent folder and the file name."""
    path = PurePosixPath(name.replace("\\", "/"))
    return (path.parent.name or "input"), path.name


def _decoded_lines(stream: BinaryIO, name: str, options: ReadOptions, report: dict) -> Iterator[tuple[int, str | None, bytes]]:
    """(line number, text with its line end or None when the line does not decode, raw bytes).

    Fills `report` with the encoding used, the number of lines and of undecodable lines, and
    (when lines failed) an `--encoding` that would read them.
    """
    encoding, failed_sample = options.encoding, []
    report.update(encoding=encoding, lines=0, undecodable=0)
    try:
        head = stream.read(SNIFF_BYTES)
    except READ_ERRORS as exc:
        raise BadFile(f"{name}: corrupt or truncated compressed data ({exc})") from None
    if encoding == "auto":
        encoding = detect_encoding(head)
    report["encoding"] = encoding
    stream = io.BufferedReader(Prepended(head, stream), buffer_size=1 << 20)
    if encoding == "utf-16":  # not ASCII-compatible: split decoded text, not bytes
        text_stream = io.TextIOWrapper(stream, encoding="utf-16", newline="\n")
        try:
            for number, text in enumerate(text_stream, 1):
                report["lines"] = number
                yield number, text, b""
        except UnicodeDecodeError as exc:
            raise BadFile(f"{name}: not valid UTF-16 ({exc})") from None
        except READ_ERRORS as exc:
            raise BadFile(f"{name}: corrupt or truncated compressed data ({exc})") from None
        return
    for number, raw in lines_of(stream, name):
        if number == 1:
            raw = strip_utf8_bom(raw)
        report["lines"] = number
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            report["undecodable"] += 1
            if len(failed_sample) < 64:
                failed_sample.append(raw)
            text = None
        yield number, text, raw
    if failed_sample:
        report["suggested_encoding"] = suggest_encoding(failed_sample)


def _reject(reason: str, source: str, file: str, line: int | None, raw: bytes | str | None = None, **extra) -> tuple:
    record = {"reason": reason, "source": source, "file": file, "line": line}
    if raw is not None:
        record["raw"] = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
    record.update(extra)
    return ("reject", record)


def _doc(doc_id: str, text: str, source: str, meta: dict) -> tuple:
    return ("doc", {"id": doc_id, "text": text, "source": source, "meta": meta})


def _line_id(source: str, file: str, line: int) -> str:
    # Zero-padded so that the smallest id (kept on dedup) is the earliest line of a file.
    return f"{source}:{file}:{line:08d}"


def _record_from_object(
    obj, options: ReadOptions, source: str, file: str, line: int, raw
) -> tuple:
    """Validate one parsed object (a JSON line, a Parquet or dataset row) into a doc or reject."""
    if not isinstance(obj, dict):
        return _reject("not_an_object", source, file, line, raw)
    text = obj.get(options.text_field)
    if text is None:
        return _reject("missing_text_field", source, file, line, raw, field=options.text_field)
    if not isinstance(text, str):
        return _reject("text_not_a_string", source, file, line, raw, field=options.text_field)
    if not text.strip():
        return _reject("empty", source, file, line, raw)
    own_id = obj.get(options.id_field)
    doc_id = str(own_id) if own_id not in (None, "") else _line_id(source, file, line)
    meta = {
        key: value
        for key, value in obj.items()
        if key not in (options.text_field, options.id_field) and isinstance(value, (str, int, float, bool))
    }
    meta.update(file=file, line=line)
    return _doc(doc_id, text, source, meta)


def read_text(stream: BinaryIO, name: str, options: ReadOptions, report: dict | None = None) -> Iterator[tuple]:
    source, file = source_and_file(name)
    report = {} if report is None else report
    lines = _decoded_lines(stream, name, options, report)
    invalid = lambda: rejection_reason(report["encoding"])
    if options.txt_mode_for(file) == "lines":
        for number, text, raw in lines:
            if text is None:
                yield _reject(invalid(), source, file, number, raw)
                continue
            text = text.rstrip("\r\n")
            if not text.strip():
                yield _reject("empty", source, file, number)
                continue
            yield _doc(_line_id(source, file, number), text, source, {"file": file, "line": number})
        return
    # Paragraph mode: a document is a run of non-blank lines; its line is where it starts.
    start, parts, bad = None, [], False
    for number, text, raw in lines:
        if text is None:
            start = start or number
            bad = True
            parts.append(raw.decode("utf-8", "backslashreplace").rstrip("\r\n"))
            continue
        text = text.rstrip("\r\n")
        if text.strip():
            start = start or number
            parts.append(text)
            continue
        if parts:
            yield _paragraph(parts, bad, source, file, start, invalid())
        start, parts, bad = None, [], False
    if parts:
        yield _paragraph(parts, bad, source, file, start, invalid())


def _paragraph(parts: list[str], bad: bool, source: str, file: str, start: int, invalid_reason: str) -> tuple:
    text = "\n".join(parts)
    if bad:
        return _reject(invalid_reason, source, file, start, text)
    return _doc(_line_id(source, file, start), text, source, {"file": file, "line": start})


def read_jsonl(stream: BinaryIO, name: str, options: ReadOptions, report: dict | None = None) -> Iterator[tuple]:
    source, file = source_and_file(name)
    report = {} if report is None else report
    for number, text, raw in _decoded_lines(stream, name, options, report):
        if text is None:
            yield _reject(rejection_reason(report["encoding"]), source, file, number, raw)
            continue
        if not text.strip():
            continue  # blank lines between JSON records are not records
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            yield _reject("invalid_json", source, file, number, text, error=str(exc))
            continue
        yield _record_from_object(obj, options, source, file, number, text)


def read_parquet(stream: BinaryIO, name: str, options: ReadOptions) -> Iterator[tuple]:
    import pyarrow
    import pyarrow.parquet as pq

    source, file = source_and_file(name)
    try:
        parquet = pq.ParquetFile(stream)
        if options.text_field not in parquet.schema_arrow.names:
            raise BadFile(f"{name}: no column {options.text_field!r} (columns: {', '.join(parquet.schema_arrow.names)})")
        row = 0
        for batch in parquet.iter_batches(batch_size=4096):
            for obj in batch.to_pylist():
                row += 1
                yield _record_from_object(obj, options, source, file, row, None)
    except (pyarrow.ArrowException, OSError) as exc:
        raise BadFile(f"{name}: unreadable Parquet file ({exc})") from None


def read_hf_dataset(spec: str, options: ReadOptions) -> Iterator[tuple]:
    """`hf:NAME[:CONFIG][:SPLIT]` from the hub (streaming), or a `save_to_disk` directory."""
    import datasets

    if spec.startswith(HF_PREFIX):
        name, config, split = (spec[len(HF_PREFIX) :].split(":") + [None, None])[:3]
        source = name.replace("/", "_")
        try:
            dataset = datasets.load_dataset(name, config or None, split=split or "train", streaming=True)
        except Exception as exc:  # the hub client raises many types; all mean "cannot load"
            raise BadFile(f"{spec}: cannot load dataset ({type(exc).__name__}: {exc})") from None
    else:
        source = PurePosixPath(spec.rstrip("/")).name
        try:
            dataset = datasets.load_from_disk(spec)
        except (FileNotFoundError, ValueError) as exc:
            raise BadFile(f"{spec}: not a dataset saved with save_to_disk ({exc})") from None
        if isinstance(dataset, datasets.DatasetDict):
            split = "train" if "train" in dataset else sorted(dataset)[0]
            dataset = dataset[split]
        else:
            split = None
    file = split or "data"
    for row, obj in enumerate(dataset, 1):
        yield _record_from_object(obj, options, source, file, row, None)


def read_input(name: str, stream: BinaryIO | None, options: ReadOptions, report: dict | None = None) -> Iterator[tuple]:
    """Every record of one input (a file opened as `stream`, or a dataset spec with no stream).

    For text and JSONL files, `report` (when given) receives the encoding used and how many lines
    did not decode (see `_decoded_lines`).
    """
    kind = input_format(name)
    if kind == "hf" or stream is None:
        yield from read_hf_dataset(name, options)
    elif kind == "parquet":
        yield from read_parquet(stream, name, options)
    elif kind == "jsonl":
        yield from read_jsonl(decompressed(stream, name), name, options, report)
    elif kind == "text":
        yield from read_text(decompressed(stream, name), name, options, report)
    else:
        raise BadFile(f"{name}: unsupported input type (expected one of {', '.join(SUPPORTED_SUFFIXES)})")


def is_hf_dataset_dir(path: str) -> bool:
    """A directory written by `datasets.save_to_disk` (Dataset or DatasetDict)."""
    from pathlib import Path

    folder = Path(path)
    return folder.is_dir() and ((folder / "dataset_info.json").is_file() or (folder / "dataset_dict.json").is_file())
