"""Corpus shards -> Megatron indexed datasets (`.bin`/`.idx`), one per shard (Apache Beam).

    python -m pipelines.tokenize_corpus --input CORPUS_DIR --output OUTPUT_DIR --tokenizer TOKENIZER_DIR
    kocpt tokenize CORPUS_DIR OUTPUT_DIR --tokenizer TOKENIZER_DIR [beam options]

Each shard `part-NNNNN-of-MMMMM.jsonl.zst` becomes `OUTPUT_DIR/part-NNNNN-of-MMMMM.{bin,idx}`
written by Megatron's `IndexedDatasetBuilder`: one sequence per document, `[BOS] tokens [EOD]`
(Llama-2 was trained with BOS at each document start; EOD separates documents that GPTDataset
packs into one sequence), uint16 when the vocabulary fits, int32 otherwise. `manifest.json`
lists every prefix with its document, token and character counts and the tokenizer's sha256, so
the training loop can check it reads data made with its own tokenizer.

A shard is the unit of parallelism (one worker tokenizes a whole shard in batches), which keeps
the output deterministic and avoids shipping every document between processes — the cost that
dominates Megatron-LM's `tools/preprocess_data.py` (`multiprocessing.Pool.imap` per document).
Before anything starts, every shard the corpus's `manifest.json` names is checked (present, same
size and sha256): a corpus without a manifest, or with a missing or changed shard, is refused.
The job writes into `OUTPUT.tmp-*` and renames it to OUTPUT only after it succeeded, so a failed
run leaves an existing output exactly as it was; the manifest appears last. Workers' logs go to
`OUTPUT.tmp-*.log`, kept when the job fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import apache_beam as beam
from apache_beam.metrics import Metrics

from corpus.shards import ShardError, read_shard, verified_shards
from pipelines.runner import (
    UsageError,
    absolute,
    is_local,
    pipeline_options,
    prepare_output,
    split_arguments,
    worker_logs_to,
)
from pipelines.tokenize_config import TokenizeSection
from stagekit.config import add_config_arguments, load_section
from stagekit.errors import BadInput
from stagekit.outputs import publish_directory, read_marker, refuse_overlap, write_marker
from tokenizer.token_encoder import TokenEncoder, indexed_dtype

MANIFEST = "manifest.json"
MANIFEST_PENDING = "manifest.pending.json"  # becomes manifest.json once the job has finished
FORMAT = "megatron-indexed-dataset"
STAGE = "tokenize"  # names this stage's outputs (stagekit.outputs)


@dataclass(frozen=True)
class TokenizeJob:
    """One run: which corpus, into which output, with which tokenizer; how is the `tokenize:` section's."""

    corpus: str
    output: str
    tokenizer: str
    section: TokenizeSection = TokenizeSection()

    def validate(self) -> None:
        self.section.validate()
        refuse_overlap(self.output, {"--input": self.corpus, "--tokenizer": self.tokenizer})


def dataset_prefix(output: str | Path, shard: str | Path) -> Path:
    name = Path(shard).name.removesuffix(".jsonl.zst")
    return Path(output) / name


class TokenizeShard(beam.DoFn):
    """One shard -> one `.bin`/`.idx` pair in `staging`; yields that shard's manifest entry."""

    def __init__(self, config: TokenizeJob, encoder: TokenEncoder, staging: str):
        self.config = config
        self.staging = staging
        self.encoder = encoder
        self.documents = Metrics.counter("tokenize", "documents")
        self.empty = Metrics.counter("tokenize", "dropped_empty_documents")
        self.tokens = Metrics.counter("tokenize", "tokens")

    def process(self, shard: str):
        import torch
        from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

        prefix = dataset_prefix(self.staging, shard)
        vocab_size = self.encoder.vocab_size
        dtype = indexed_dtype(vocab_size)
        tmp_bin = prefix.with_name(prefix.name + ".bin.tmp")
        tmp_idx = prefix.with_name(prefix.name + ".idx.tmp")
        builder = IndexedDatasetBuilder(str(tmp_bin), dtype=dtype)
        bos = [self.encoder.bos_id] if self.config.section.add_bos else []
        eod = [self.encoder.eos_id] if self.config.section.append_eod else []
        counts = {"documents": 0, "tokens": 0, "characters": 0, "dropped_empty": 0}

        def flush(texts: list[str]) -> None:
            for ids in self.encoder.encode_batch(texts):
                document = bos + ids + eod
                check_ids_in_range(document, vocab_size, shard)
                builder.add_document(document, [len(document)])
                counts["tokens"] += len(document)
            counts["documents"] += len(texts)
            counts["characters"] += sum(len(text) for text in texts)

        batch: list[str] = []
        for document in read_shard(shard):
            text = document.get("text")
            if not isinstance(text, str):
                raise ShardError(f"{shard}: document {document.get('id')!r} has no text field")
            if not text:
                counts["dropped_empty"] += 1
                continue
            batch.append(text)
            if len(batch) >= self.config.section.batch_size:
                flush(batch)
                batch = []
        if batch:
            flush(batch)
        builder.finalize(str(tmp_idx))
        os.replace(tmp_bin, prefix.with_suffix(".bin"))
        os.replace(tmp_idx, prefix.with_suffix(".idx"))
        self.documents.inc(counts["documents"])
        self.empty.inc(counts["dropped_empty"])
        self.tokens.inc(counts["tokens"])
        yield {"prefix": prefix.name, "shard": Path(shard).name, "dtype": dtype.__name__, **counts}


def write_manifest(entries: list[dict], config: TokenizeJob, encoder: TokenEncoder, staging: str) -> dict:
    entries = sorted(entries, key=lambda entry: entry["prefix"])
    manifest = {
        "format": FORMAT,
        "datasets": entries,
        "documents": sum(e["documents"] for e in entries),
        "tokens": sum(e["tokens"] for e in entries),
        "characters": sum(e["characters"] for e in entries),
        "tokenizer": {
            "path": str(Path(encoder.model_path).resolve()),
            "sha256": encoder.sha256(),
            "vocab_size": encoder.vocab_size,
            "bos_id": encoder.bos_id,
            "eos_id": encoder.eos_id,
        },
        # flat, as before the section moved into the job: corpus, output, tokenizer and the section's keys
        "config": {"corpus": config.corpus, "output": config.output, "tokenizer": config.tokenizer, **asdict(config.section)},
    }
    (Path(staging) / MANIFEST_PENDING).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def check_special_ids(config: TokenizeJob, encoder: TokenEncoder) -> None:
    """The BOS/EOS the settings ask for must exist (a Qwen-style tokenizer has no BOS): refused
    before any work, naming the setting that turns it off, instead of writing id -1."""
    vocab = encoder.vocab_size
    for wanted, token_id, name, flag, key in ((config.section.add_bos, encoder.bos_id, "BOS", "--no-bos", "add_bos"),
                                               (config.section.append_eod, encoder.eos_id, "EOS", "--no-eod", "append_eod")):
        if wanted and not 0 <= token_id < vocab:
            raise BadInput(f"{config.tokenizer}: the tokenizer has no {name} token (id {token_id}), but tokenize.{key} "
                           f"asks for one; pass {flag} or set tokenize.{key}=false")


def check_ids_in_range(ids: list[int], vocab_size: int, shard: str) -> None:
    """Every id written must index an embedding row: [0, vocab)."""
    if ids and (min(ids) < 0 or max(ids) >= vocab_size):
        bad = next(i for i in ids if not 0 <= i < vocab_size)
        raise ShardError(f"{shard}: the tokenizer produced id {bad}, outside [0, {vocab_size}); nothing was written")


def check_output(output: Path, corpus: Path) -> None:
    """An output may be new, an empty folder, or an earlier tokenized dataset (replaced on success)."""
    if not output.exists():
        return
    marker = read_marker(output)
    if marker is not None:
        if marker["stage"] == STAGE:
            return
        raise BadInput(f"{output}: an output of kocpt {marker['stage']}, not a tokenized dataset folder "
                       "(choose another --output)")
    if not output.is_dir():
        raise BadInput(f"{output}: exists and is not a folder")
    manifest = output / MANIFEST
    if manifest.is_file():
        try:
            kind = json.loads(manifest.read_text()).get("format")
        except (ValueError, AttributeError):
            kind = None
        if kind == FORMAT:
            return
        if (output / "shards").is_dir():
            raise BadInput(f"{output}: is a corpus, not an output folder (tokenize reads one corpus, {corpus}; "
                           "name a new folder for the datasets with --output)")
    if any(output.iterdir()):
        raise BadInput(f"{output}: exists and is not a tokenized dataset folder (remove it or choose another --output)")


def promote(staging: Path, output: Path) -> None:
    """The finished staging folder becomes `output`; an earlier output is removed only after."""
    os.replace(staging / MANIFEST_PENDING, staging / MANIFEST)
    publish_directory(staging, output)


def run(config: TokenizeJob, beam_args: list[str] | None = None, log_to_file: bool = False, say=None) -> dict:
    """Tokenize every shard; returns the manifest. Raises BadInput/ShardError.

    With `log_to_file`, Beam's and its workers' logs go to `OUTPUT.tmp-*.log` (kept on failure).
    """
    config.validate()
    try:
        shards = [absolute(str(path)) for path in verified_shards(config.corpus)]  # read by workers
    except ShardError as exc:
        raise BadInput(str(exc)) from None
    encoder = TokenEncoder.load(absolute(config.tokenizer))  # loaded again by each worker
    check_special_ids(config, encoder)
    output = Path(config.output)
    check_output(output, Path(config.corpus))
    try:
        prepare_output(str(output), say or (lambda line: print(line, file=sys.stderr)))
    except UsageError as exc:
        raise BadInput(str(exc)) from None
    staging = Path(absolute(f"{output}.tmp-{uuid.uuid4().hex[:8]}"))  # workers write into it
    staging.mkdir()
    write_marker(staging, STAGE)
    options = pipeline_options(beam_args or [], default_workers=min(len(shards), os.cpu_count() or 1))
    log_path = f"{staging}.log" if log_to_file and is_local(options) else None
    try:
        with worker_logs_to(log_path):
            with beam.Pipeline(options=options) as pipeline:
                (
                    pipeline
                    | "Shards" >> beam.Create(shards)
                    | "Spread" >> beam.Reshuffle()
                    | "Tokenize" >> beam.ParDo(TokenizeShard(config, encoder, str(staging)))
                    | "Collect" >> beam.combiners.ToList()
                    | "Manifest" >> beam.Map(lambda found: write_manifest(found, config, encoder, str(staging)))
                )
        pending = staging / MANIFEST_PENDING
        if not pending.exists():
            raise BadInput(f"{output}: the pipeline finished without writing {MANIFEST}")
        manifest = json.loads(pending.read_text())
        if len(manifest["datasets"]) != len(shards):
            raise BadInput(f"{output}: {len(manifest['datasets'])} datasets written for {len(shards)} shards")
        promote(staging, output)
    except BadInput:
        raise
    except Exception as exc:  # a worker's ShardError arrives wrapped in Beam's own exception
        found = re.search(r"ShardError: (.*)", str(exc))
        if found:
            if log_path and os.path.exists(log_path):
                os.remove(log_path)  # the one line says it all
            raise BadInput(found.group(1).strip().rstrip("'\"")) from None
        if log_path:
            raise BadInput(f"the Beam job failed ({type(exc).__name__}); its workers' log is {log_path}") from None
        raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if log_path and os.path.exists(log_path):
        os.remove(log_path)
    return manifest


def read_manifest(path: str | Path) -> dict:
    """The manifest of a tokenized directory (for the training loop and tests)."""
    manifest_path = Path(path) / MANIFEST
    if not manifest_path.is_file():
        raise BadInput(f"{path}: no {MANIFEST} (not a tokenized dataset directory)")
    return json.loads(manifest_path.read_text())


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Tokenize the shards of one corpus output into Megatron indexed datasets (.bin/.idx), "
        "one per shard, with Apache Beam. Beam's own options pass through (e.g. --direct_num_workers=4, "
        "--runner=DataflowRunner ...); anything else unknown is refused.",
    )
    parser.add_argument("paths", nargs="*", metavar="CORPUS OUTPUT",
                        help="the corpus output directory and the output directory (or use --input/--output)")
    parser.add_argument("--input", help="the corpus output directory (with manifest.json and shards/)")
    parser.add_argument("--output", help="directory for the .bin/.idx files and manifest.json "
                        "(new, empty, or an earlier tokenized output, replaced only on success)")
    parser.add_argument("--tokenizer", required=True, help="tokenizer directory (or tokenizer.model)")
    add_config_arguments(parser, ("tokenize",))  # the tokenize: section sets the defaults below
    parser.add_argument("--no-bos", dest="add_bos", action="store_false", default=None,
                        help="do not start documents with BOS (default: add it)")
    parser.add_argument("--no-eod", dest="append_eod", action="store_false", default=None,
                        help="do not end documents with EOD (default: append it)")
    parser.add_argument("--batch-size", type=int, default=None, help="documents per encode call (default 256)")
    parser.add_argument("--verbose", action="store_true", help="show Beam's and its workers' logs instead of keeping them in a file")
    return parser


def corpus_and_output(args: argparse.Namespace) -> tuple[str, str]:
    """One corpus and one output, named by flags or as the two positional paths."""
    rest = list(args.paths)
    corpus = args.input if args.input is not None else (rest.pop(0) if rest else None)
    output = args.output if args.output is not None else (rest.pop(0) if rest else None)
    if rest:
        raise BadInput(f"unexpected path(s) {' '.join(rest)}: tokenize reads one corpus into one output per run")
    if corpus is None or output is None:
        raise BadInput("name the corpus and the output (CORPUS OUTPUT, or --input CORPUS --output OUTPUT)")
    return corpus, output


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog)
    prog = parser.prog
    started = time.perf_counter()
    try:
        args, beam_args = split_arguments(parser, argv)
        corpus, output = corpus_and_output(args)
        section = load_section(TokenizeSection, "tokenize", args.config, args.overrides,
                               flags={"add_bos": args.add_bos, "append_eod": args.append_eod, "batch_size": args.batch_size})
        config = TokenizeJob(corpus=corpus, output=output, tokenizer=args.tokenizer, section=section)
        manifest = run(config, beam_args, log_to_file=not args.verbose,
                       say=lambda line: print(f"{prog}: {line}", file=sys.stderr))
    except (BadInput, ShardError, UsageError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - started
    print(
        f"{prog}: {len(manifest['datasets'])} datasets, {manifest['documents']:,} documents, "
        f"{manifest['tokens']:,} tokens ({manifest['tokens'] / max(seconds, 1e-9):,.0f} tokens/s) "
        f"-> {config.output}"
    )
    return 0


if __name__ == "__main__":
    from stagekit.entry import run_main  # Ctrl-C and bad input: one line

    sys.exit(run_main(main))
