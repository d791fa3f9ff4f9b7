"""Beam transforms of the corpus job. Each wraps pure functions from `corpus/` and counts what it
drops in Beam metrics; only portable primitives are used (ParDo, GroupByKey, CoGroupByKey,
Combine, Flatten), so the graph runs unchanged on Dataflow, Flink and Spark.

Elements that leave the main line carry their outcome with them:
  rejected records: ("rejected", reason, record)  -- unreadable input (bad line, bad file)
  dropped documents: ("dropped", reason, record)  -- quality filter, exact or near duplicate
The job's stats are counted from these and from the kept shards, so they add up exactly.
"""

from __future__ import annotations

import json
import os

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from corpus.clean import clean_document
from corpus.encodings import MOSTLY_UNDECODABLE
from corpus.filters import QualityConfig
from corpus.index import read_index
from corpus.records import HF_PREFIX, BadFile, ReadOptions, read_input

BAD_FILE_MARKER = "KOCPT-BAD-FILE: "
MANIFEST_PENDING = "manifest.pending.json"  # becomes manifest.json once the job has finished
NAMESPACE = "kocpt.corpus"


def _count(name: str) -> None:
    Metrics.counter(NAMESPACE, name).inc()


class ReadInputFn(beam.DoFn):
    """One input → documents, and rejects for unparseable records.

    An input is ("file", path) for anything Beam's FileSystems can open, or ("dataset", spec) for
    a Hugging Face dataset (a save_to_disk directory or `hf:NAME[:CONFIG][:SPLIT]`). Each text or
    JSONL file also yields (path, report) to FILES: the encoding used and the undecodable lines.

    A spec may add (part, parts): the input is read whole but only every parts-th record from
    `part` on is emitted (and the file report and a bad-file record only by part 0). With fewer
    inputs than workers this spreads the cleaning over workers without shuffling any text.
    """

    REJECTED = "rejected"
    FILES = "files"

    def __init__(self, options: ReadOptions, skip_bad_files: bool):
        self.options = options
        self.skip_bad_files = skip_bad_files
        # Built in the launching process: relative input names are relative to its folder, which
        # workers need not share (an external worker pool). Ids and reports keep the names as given.
        self.launch_dir = os.getcwd()

    def process(self, spec: tuple):
        kind, name, part, parts = spec if len(spec) == 4 else (*spec, 0, 1)
        path = name if name.startswith(HF_PREFIX) or "://" in name else os.path.join(self.launch_dir, name)
        read = 0
        try:
            if kind == "dataset":
                for kind_record in read_input(path, None, self.options):
                    if read % parts == part:
                        yield self._emit(kind_record)
                    read += 1
                return
            report: dict = {}
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as stream:
                for kind_record in read_input(name, stream, self.options, report):
                    if read % parts == part:
                        yield self._emit(kind_record)
                    read += 1
            if report and part == 0:
                yield beam.pvalue.TaggedOutput(self.FILES, (name, report))
        except BadFile as exc:
            if part != 0:
                return  # part 0 reports (or raises) it
            if not self.skip_bad_files:
                # Beam wraps worker errors in long tracebacks; main() finds this marker and prints one line.
                raise RuntimeError(f"{BAD_FILE_MARKER}{exc}") from None
            _count("input_records")
            _count("rejected.bad_file")
            record = {"reason": "bad_file", "file": name, "error": str(exc), "records_read_before_error": read}
            yield beam.pvalue.TaggedOutput(self.REJECTED, ("rejected", "bad_file", record))

    def _emit(self, kind_record):
        kind, record = kind_record
        _count("input_records")
        if kind == "doc":
            return record
        _count(f"rejected.{record['reason']}")
        return beam.pvalue.TaggedOutput(self.REJECTED, ("rejected", record["reason"], record))


class CleanFn(beam.DoFn):
    """normalize → scrub PII → quality filter; dropped documents go to the DROPPED output."""

    DROPPED = "dropped"
    PII = "pii"

    def __init__(self, quality: QualityConfig, scrub: bool):
        self.quality = quality
        self.scrub = scrub

    def process(self, doc: dict):
        cleaned, reason, pii_counts = clean_document(doc, self.quality, self.scrub)
        for kind, count in pii_counts.items():
            Metrics.counter(NAMESPACE, f"pii.{kind}").inc(count)
            yield beam.pvalue.TaggedOutput(self.PII, (kind, count))
        if reason is None:
            yield cleaned
        else:
            _count(f"dropped.{reason}")
            yield beam.pvalue.TaggedOutput(self.DROPPED, ("dropped", reason, {**cleaned, "reason": reason}))


def read_index_file(path: str):
    """Rows of one earlier output's index file (read whole: Parquet needs to seek)."""
    import io

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        data = handle.read()
    yield from read_index(io.BytesIO(data))


def record_key(record: dict) -> str:
    """Sort and shard key of a rejected record: its id, or file and line when it has none."""
    return record.get("id") or f"{record.get('file')}:{record.get('line') or 0:010d}"


def undecodable_files(file_reports: list[tuple[str, dict]]) -> list[dict]:
    """Files most of whose lines did not decode, with the share and an encoding that would read them."""
    problems = []
    for name, report in sorted(file_reports):
        if report["lines"] and report["undecodable"] / report["lines"] > MOSTLY_UNDECODABLE:
            problems.append({
                "file": name, "encoding": report["encoding"], "lines": report["lines"],
                "undecodable": report["undecodable"], "share": round(report["undecodable"] / report["lines"], 4),
                "suggested_encoding": report.get("suggested_encoding"),
            })
    return problems


def write_manifest_and_stats(
    _, staging_dir, run_info, shard_entries, rejected_entries, outcome_counts, pii_counts, read_docs, read_rejects,
    file_reports=(), index_entries=(),
):
    """The job's last step: `stats.json` (counts that must add up) and the pending manifest."""
    rejected: dict[str, int] = {}
    dropped: dict[str, int] = {}
    for name, count in outcome_counts:
        group, reason = name.split(".", 1)
        (rejected if group == "rejected" else dropped)[reason] = count
    kept = sum(entry["documents"] for entry in shard_entries)
    input_records = read_docs + read_rejects
    stats = {
        "input_records": input_records,
        "kept": kept,
        "dropped": dict(sorted(dropped.items())),
        "rejected": dict(sorted(rejected.items())),
        "pii_replaced": dict(sorted(pii_counts)),
    }
    problems = undecodable_files(list(file_reports))
    if problems:
        stats["undecodable_files"] = problems
    balance = kept + sum(dropped.values()) + sum(rejected.values())
    stats["conservation"] = {"holds": balance == input_records, "kept + dropped + rejected": balance}
    if balance != input_records:  # a bug, never bad input: fail rather than publish wrong counts
        raise RuntimeError(f"corpus counts do not add up: input {input_records} != kept+dropped+rejected {balance}")
    manifest = {
        **run_info,
        "documents": kept,
        "shards": sorted(shard_entries, key=lambda entry: entry["file"]),
        "rejected": sorted(rejected_entries, key=lambda entry: entry["file"]),
        "encodings": {name: report["encoding"] for name, report in sorted(file_reports)},
        "index": sorted(index_entries, key=lambda entry: entry["file"]),
    }
    for name, payload in (("stats.json", stats), (MANIFEST_PENDING, manifest)):
        path = FileSystems.join(staging_dir, name)
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            handle.write((json.dumps(payload, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
    return stats
