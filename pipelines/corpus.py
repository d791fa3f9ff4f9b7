"""`python -m pipelines.corpus` (and `kocpt corpus`): raw Korean text → clean, deduplicated shards.

    read → normalize → scrub PII → quality filter → exact dedup → MinHash near dedup → shard

Runs on Beam: locally on the FnApiRunner with worker processes, or on any runner given with
Beam's own options (`--runner DataflowRunner --project ... --region ... --temp_location ...`).
The output appears complete or not at all: the job writes into `OUTPUT.tmp-*` and the directory
is renamed to OUTPUT only after the job succeeded and the counts added up; until then its manifest
is `manifest.pending.json`, so an interrupted run never leaves a complete-looking folder (and the
next run to the same output removes such folders).

Nothing a user passes is dropped: an argument neither this stage nor Beam knows stops the run,
files of other types inside a directory input are named (and listed in the manifest as
`skipped_files`), and a file whose lines mostly fail to decode is named in the summary with the
`--encoding` that would read it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
import uuid

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from corpus.components import rounds_for
from corpus.config import CorpusConfig, load_corpus_config
from corpus.encodings import ENCODINGS
from corpus.index import tag_previous
from corpus.records import SUPPORTED_TYPES
from pipelines import corpus_steps as steps
from pipelines import spill_steps as spill
from pipelines.clustering import JOB_ERROR_MARKER
from pipelines.corpus_paths import STAGE, check_corpus_output, expand_inputs, previous_index_files, promote
from pipelines.near_dedup import NearDedup
from pipelines.runner import (
    UsageError,
    absolute,
    is_local,
    parallelism_hint,
    pipeline_options,
    prepare_output,
    split_arguments,
    worker_logs_to,
)
from stagekit.config import add_config_arguments
from stagekit.outputs import MARKER, write_marker

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "demo.yaml")
MIB = 1 << 20


def build_parser(prog: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m pipelines.corpus",
        description="Clean, scrub, filter, deduplicate (exact + MinHash) and shard raw Korean text. "
        "Any Apache Beam pipeline option (--runner, --direct_num_workers, Dataflow/Flink/Spark "
        "options) is passed to Beam untouched.",
    )
    parser.add_argument("--input", action="extend", nargs="+", required=True, metavar="PATH",
                        help="one or more files, globs, directories (read recursively), save_to_disk dataset "
                        "directories, or hf:NAME[:CONFIG][:SPLIT]; repeatable. "
                        f"Files: {SUPPORTED_TYPES}")
    parser.add_argument("--output", required=True, help="output directory (must not exist, unless --overwrite)")
    add_config_arguments(parser, ("corpus",))  # the corpus: section; the flags below win over it
    parser.add_argument("--text-field", help="JSON/Parquet/dataset field holding the text (default: text)")
    parser.add_argument("--id-field", help="field holding a document id (default: id); else <source>:<file>:<line>")
    parser.add_argument("--txt-mode", choices=("lines", "paragraphs"),
                        help=".txt documents: one per line (default) or separated by blank lines")
    parser.add_argument("--encoding", choices=ENCODINGS,
                        help=".txt/.jsonl encoding (default: utf-8); auto decides per file: BOM, then strict "
                        "UTF-8, then CP949, and records the choice in manifest.json")
    parser.add_argument("--num-shards", type=int, help="number of output shards (default: from --target-shard-mb)")
    parser.add_argument("--target-shard-mb", type=float, help="input MB per shard when --num-shards is not given")
    parser.add_argument("--zstd-level", type=int, help="zstd compression level 1-22 (default: 10)")
    parser.add_argument("--no-near-dedup", action="store_true", help="skip MinHash near-duplicate removal")
    parser.add_argument("--dedup-against", action="append", default=[], metavar="PREVIOUS_OUTPUT",
                        help="an earlier kocpt corpus output (repeatable): documents that are exact or near "
                        "duplicates of its documents are dropped (read from its index/, never its text)")
    parser.add_argument("--skip-bad-files", action="store_true",
                        help="record a corrupt/truncated file in rejected/ and go on, instead of failing the job")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory (only after success)")
    parser.add_argument("--verbose", action="store_true", help="show Beam's and its workers' logs instead of keeping them in a file")
    return parser


def resolve_config(args: argparse.Namespace) -> CorpusConfig:
    """The corpus: section of --config, then --set corpus.KEY=VALUE, then the explicit flags."""
    return load_corpus_config(args.config, args.overrides, {
        "read.text_field": args.text_field, "read.id_field": args.id_field, "read.txt_mode": args.txt_mode,
        "read.encoding": args.encoding, "num_shards": args.num_shards, "target_shard_mb": args.target_shard_mb,
        "zstd_level": args.zstd_level, "near_dedup": False if args.no_near_dedup else None,
    })


def count_shards(config: CorpusConfig, input_bytes: int) -> int:
    if config.num_shards is not None:
        return config.num_shards
    return max(1, math.ceil(input_bytes / (config.target_shard_mb * MIB)))


def build_pipeline(
    pipeline, inputs, config: CorpusConfig, staging: str, num_shards: int, skip_bad_files: bool, run_info: dict,
    parallelism: int = 8, previous: list[str] = (),
):
    """The whole job graph; returns nothing (everything it produces is written under `staging`).

    `previous`: index files of earlier outputs to deduplicate against.
    """
    # Fewer inputs than ~4 per worker: each is read by several workers, each emitting every
    # parts-th record, so the cleaning spreads over workers without shuffling any text.
    parts = max(1, math.ceil(2 * parallelism / len(inputs))) if len(inputs) < 4 * parallelism else 1
    specs = [(kind, name, part, parts) for kind, name, _ in inputs for part in range(parts)]
    read = (
        pipeline
        | "Inputs" >> beam.Create(specs)
        | "SpreadInputs" >> beam.Reshuffle()
        | "Read" >> beam.ParDo(steps.ReadInputFn(config.read, skip_bad_files)).with_outputs(
            steps.ReadInputFn.REJECTED, steps.ReadInputFn.FILES, main="docs"
        )
    )
    cleaned = read.docs | "Clean" >> beam.ParDo(steps.CleanFn(config.quality, config.scrub_pii)).with_outputs(
        steps.CleanFn.DROPPED, steps.CleanFn.PII, main="docs"
    )
    outcomes = [read[steps.ReadInputFn.REJECTED], cleaned[steps.CleanFn.DROPPED]]
    input_bytes = sum(size for _, _, size in inputs)
    # Key-space partitions of the dedup shuffles: one per 64 MB of input, so no step holds all keys.
    partitions = max(1, math.ceil(input_bytes / (64 * MIB)))
    exact_on = config.exact_dedup or bool(previous)
    # The text stops here: documents go to per-shard runs on disk; only keys, ids and file names go on.
    spilled = (
        cleaned.docs
        | "BatchClean" >> beam.BatchElements(min_batch_size=2000, max_batch_size=2000)
        | "Spill" >> beam.ParDo(spill.SpillFn(FileSystems.join(staging, spill.SPILL_FOLDER), num_shards,
                                              config.minhash if config.near_dedup else None,
                                              partitions if exact_on else 0)).with_outputs(spill.SpillFn.EXACT, main="runs")
    )
    runs = spilled.runs
    previous_rows = previous_exact = previous_near = None
    if previous:
        previous_rows = (pipeline | "PreviousIndex" >> beam.Create(list(previous))
                         | "ReadPreviousIndex" >> beam.FlatMap(steps.read_index_file))
        previous_exact = previous_rows | "PreviousTexts" >> beam.Map(lambda row: (row[0], row[1]))
        previous_near = (previous_rows | "PreviousSigned" >> beam.Filter(lambda row: row[3] is not None)
                         | "TagPrevious" >> beam.Map(lambda row: (tag_previous(row[0]), row[2], row[3])))
    if exact_on:
        exact = spilled[spill.SpillFn.EXACT] | "ExactDedup" >> spill.ExactDedup(partitions, previous_exact,
                                                                                within=config.exact_dedup)
    else:
        exact = pipeline | "NoExactDuplicates" >> beam.Create([])
    drops = [exact]
    if config.near_dedup:
        # A document takes at least two bytes (a character and a line end); a hub dataset's size is unknown.
        max_documents = input_bytes // 2 if input_bytes else 1 << 40
        # Each band's candidates in hash ranges of about 4 GB of input (a step holds 1/ranges of a band).
        ranges = max(1, math.ceil(input_bytes / (4 << 30)))
        drops.append((runs, exact) | "NearDedup" >> NearDedup(config.minhash, ranges, rounds_for(max_documents), num_shards,
                                                             FileSystems.join(staging, spill.SPILL_FOLDER), previous_near))
    all_drops = tuple(drops) | "AllDrops" >> beam.Flatten()
    row_bytes = 4 * config.minhash.num_perm if config.near_dedup else 0
    written = (runs, all_drops) | "Shards" >> spill.WriteShardsFromRuns(
        staging, num_shards, config.zstd_level, row_bytes, (config.minhash.bands, config.minhash.rows))
    outcomes.append(written.dropped)

    all_outcomes = tuple(outcomes) | "AllOutcomes" >> beam.Flatten()
    rejected_files = (
        all_outcomes
        | "OutcomeRecords" >> beam.Map(lambda outcome: outcome[2])
        | "SpillRejected" >> beam.ParDo(spill.SpillRecordsFn(FileSystems.join(staging, spill.SPILL_FOLDER, "rejected"),
                                                             config.rejected_shards, steps.record_key))
        | "Rejected" >> spill.WriteShardsFromRuns(staging, config.rejected_shards, config.zstd_level, 0, None, "rejected")
    )
    outcome_counts = (
        all_outcomes
        | "OutcomeNames" >> beam.Map(lambda outcome: f"{outcome[0]}.{outcome[1]}")
        | "CountOutcomes" >> beam.combiners.Count.PerElement()
    )
    pii_counts = cleaned[steps.CleanFn.PII] | "CountPII" >> beam.CombinePerKey(sum)
    file_reports = read[steps.ReadInputFn.FILES]
    read_docs = read.docs | "CountReadDocs" >> beam.combiners.Count.Globally()
    read_rejects = read[steps.ReadInputFn.REJECTED] | "CountReadRejects" >> beam.combiners.Count.Globally()
    _ = (
        pipeline
        | "Finalize" >> beam.Create([None])
        | "WriteManifest"
        >> beam.Map(
            steps.write_manifest_and_stats,
            staging_dir=staging,
            run_info=run_info,
            shard_entries=beam.pvalue.AsList(written.entries),
            rejected_entries=beam.pvalue.AsList(rejected_files.entries),
            outcome_counts=beam.pvalue.AsList(outcome_counts),
            pii_counts=beam.pvalue.AsList(pii_counts),
            read_docs=beam.pvalue.AsSingleton(read_docs),
            read_rejects=beam.pvalue.AsSingleton(read_rejects),
            file_reports=beam.pvalue.AsList(file_reports),
            index_entries=beam.pvalue.AsList(written[spill.WriteShardFromRunsFn.INDEX]),
        )
    )


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog)
    prog = parser.prog
    staging = log_path = None
    say = lambda line: print(f"{prog}: {line}", file=sys.stderr)
    try:
        args, beam_args = split_arguments(parser, argv)
        config = resolve_config(args)
        output = args.output.rstrip("/")
        check_corpus_output(output, args)
        inputs, skipped = expand_inputs(args.input)
        previous = previous_index_files(args.dedup_against)
        num_shards = count_shards(config, sum(size for _, _, size in inputs))
        options = pipeline_options(beam_args)
        prepare_output(output, say)
        staging = f"{absolute(output)}.tmp-{uuid.uuid4().hex[:8]}"  # workers write it, in folders of their own
        run_info = {
            "inputs": [{"kind": kind, "path": name, "bytes": size} for kind, name, size in inputs],
            "skipped_files": skipped,
            "dedup_against": [path.rstrip("/") for path in args.dedup_against],
            "config": config.to_dict(),
            "num_shards": num_shards,
            "runner": options.get_all_options()["runner"],
        }
        outputs = [path for path in skipped if path.endswith("/")]
        files = [path for path in skipped if not path.endswith("/")]
        if files:
            shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
            say(f"warning: skipping {len(files)} file(s) of unsupported type: {shown} "
                f"(listed in manifest.json skipped_files; supported: {SUPPORTED_TYPES})")
        if outputs:
            say(f"warning: skipping {len(outputs)} kocpt output or temporary folder(s) under the inputs: "
                f"{', '.join(outputs)} (listed in manifest.json skipped_files)")
        say(f"{len(inputs)} input(s), {sum(s for *_, s in inputs) / MIB:.1f} MB → {output} "
            f"({num_shards} shards) on {run_info['runner']}")
        started = time.time()
        if "://" not in staging:
            os.makedirs(staging)  # visible from the start, so a killed run's folder is found and removed
            write_marker(staging, STAGE)
        else:
            with FileSystems.create(FileSystems.join(staging, MARKER)) as handle:
                handle.write(json.dumps({"stage": STAGE}).encode())
        log_path = None if args.verbose or not is_local(options) else f"{staging}.log"
        with worker_logs_to(log_path):
            with beam.Pipeline(options=options) as pipeline:
                build_pipeline(pipeline, inputs, config, staging, num_shards, args.skip_bad_files, run_info,
                               parallelism_hint(options), previous)
        spill.remove_spill(staging)
        promote(staging, output, args.overwrite)
        if log_path:
            os.remove(log_path)
        staging = None
    except (UsageError, ValueError, FileNotFoundError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # Beam wraps worker errors; a bad input file is still one line
        message = str(exc)
        if JOB_ERROR_MARKER in message:
            line = message.split(JOB_ERROR_MARKER, 1)[1].splitlines()[0].strip().rstrip("'\"")
            print(f"{prog}: error: {line} (workers' log: {log_path})" if log_path else f"{prog}: error: {line}",
                  file=sys.stderr)
            return 1
        if steps.BAD_FILE_MARKER in message:
            line = message.split(steps.BAD_FILE_MARKER, 1)[1].splitlines()[0].strip().rstrip("'\"")
            print(f"{prog}: error: {line} (use --skip-bad-files to record it in rejected/ and go on)", file=sys.stderr)
            if log_path and os.path.exists(log_path):
                os.remove(log_path)  # the one line says it all
            return 1
        if log_path:
            print(f"{prog}: error: the Beam job failed ({type(exc).__name__}); its workers' log is {log_path}",
                  file=sys.stderr)
            return 1
        raise
    finally:
        if staging and os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
    stats = json.loads(open(os.path.join(output, "stats.json"), encoding="utf-8").read()) if is_local(options) or os.path.isdir(output) else {}
    _print_summary(prog, output, stats, time.time() - started)
    return 0


def _print_summary(prog: str, output: str, stats: dict, seconds: float) -> None:
    if not stats:
        print(f"{prog}: done in {seconds:.0f}s → {output}", file=sys.stderr)
        return
    print(f"{prog}: {stats['input_records']:,} records → {stats['kept']:,} kept in {seconds:.1f}s → {output}", file=sys.stderr)
    for group in ("rejected", "dropped"):
        for reason, count in sorted(stats[group].items(), key=lambda item: -item[1]):
            print(f"  {group:<8} {reason:<20} {count:>10,}", file=sys.stderr)
    if stats.get("pii_replaced"):
        print("  pii replaced: " + ", ".join(f"{k} {v:,}" for k, v in sorted(stats["pii_replaced"].items())), file=sys.stderr)
    for problem in stats.get("undecodable_files", []):
        hint = (f"rerun with --encoding {problem['suggested_encoding']} (or --encoding auto)"
                if problem.get("suggested_encoding") else "it is not in an encoding this job reads")
        print(f"  warning: {problem['file']}: {problem['share']:.0%} of {problem['lines']:,} lines do not decode as "
              f"{problem['encoding']}; {hint}", file=sys.stderr)


if __name__ == "__main__":
    from stagekit.entry import run_main  # Ctrl-C and bad input: one line

    sys.exit(run_main(main))
