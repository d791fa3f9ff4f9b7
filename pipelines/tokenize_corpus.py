"""Corpus shards -> Megatron indexed datasets (`.bin`/`.idx`), one per shard (Apache Beam).

    python -m pipelines.tokenize_corpus CORPUS_DIR OUTPUT_DIR --tokenizer TOKENIZER_DIR
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
Files are written under a temporary name and renamed, so an interrupted run never leaves a
complete-looking dataset; the manifest is written last.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import apache_beam as beam
from apache_beam.metrics import Metrics

from corpus.shards import ShardError, read_shard, shard_paths
from pipelines.runner import pipeline_options
from pretrain.token_encoder import TokenEncoder, TokenizerError, indexed_dtype

MANIFEST = "manifest.json"


class BadInput(ValueError):
    """Input that cannot be tokenized; the message names the file and the problem."""


@dataclass(frozen=True)
class TokenizeConfig:
    corpus: str
    output: str
    tokenizer: str
    add_bos: bool = True
    append_eod: bool = True
    batch_size: int = 256  # documents per sentencepiece call

    def validate(self) -> None:
        if self.batch_size < 1:
            raise BadInput(f"batch_size must be >= 1, got {self.batch_size}")
        if Path(self.output).resolve() == Path(self.corpus).resolve():
            raise BadInput(f"{self.output}: output directory must differ from the corpus directory")


def dataset_prefix(output: str | Path, shard: str | Path) -> Path:
    name = Path(shard).name.removesuffix(".jsonl.zst")
    return Path(output) / name


class TokenizeShard(beam.DoFn):
    """One shard -> one `.bin`/`.idx` pair; yields that shard's manifest entry."""

    def __init__(self, config: TokenizeConfig, encoder: TokenEncoder):
        self.config = config
        self.encoder = encoder
        self.documents = Metrics.counter("tokenize", "documents")
        self.empty = Metrics.counter("tokenize", "dropped_empty_documents")
        self.tokens = Metrics.counter("tokenize", "tokens")

    def process(self, shard: str):
        import torch  # noqa: F401  (IndexedDatasetBuilder imports it; keep the import in workers)
        from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

        prefix = dataset_prefix(self.config.output, shard)
        dtype = indexed_dtype(self.encoder.vocab_size)
        tmp_bin = prefix.with_name(prefix.name + ".bin.tmp")
        tmp_idx = prefix.with_name(prefix.name + ".idx.tmp")
        builder = IndexedDatasetBuilder(str(tmp_bin), dtype=dtype)
        bos = [self.encoder.bos_id] if self.config.add_bos else []
        eod = [self.encoder.eos_id] if self.config.append_eod else []
        counts = {"documents": 0, "tokens": 0, "characters": 0, "dropped_empty": 0}

        def flush(texts: list[str]) -> None:
            for ids in self.encoder.encode_batch(texts):
                document = bos + ids + eod
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
            if len(batch) >= self.config.batch_size:
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


def write_manifest(entries: list[dict], config: TokenizeConfig, encoder: TokenEncoder) -> dict:
    entries = sorted(entries, key=lambda entry: entry["prefix"])
    manifest = {
        "format": "megatron-indexed-dataset",
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
        "config": asdict(config),
    }
    path = Path(config.output) / MANIFEST
    tmp = path.with_name(MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return manifest


def run(config: TokenizeConfig, beam_args: list[str] | None = None) -> dict:
    """Tokenize every shard; returns the manifest. Raises BadInput/ShardError/TokenizerError."""
    config.validate()
    try:
        shards = [str(path) for path in shard_paths(config.corpus)]
    except ShardError as exc:
        raise BadInput(str(exc)) from None
    encoder = TokenEncoder.load(config.tokenizer)
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    stale = output / MANIFEST
    if stale.exists():  # a rerun: the old manifest must not describe a half-rewritten directory
        stale.unlink()

    options = pipeline_options(beam_args or [], default_workers=min(len(shards), os.cpu_count() or 1))
    try:
        with beam.Pipeline(options=options) as pipeline:
            (
                pipeline
                | "Shards" >> beam.Create(shards)
                | "Spread" >> beam.Reshuffle()
                | "Tokenize" >> beam.ParDo(TokenizeShard(config, encoder))
                | "Collect" >> beam.combiners.ToList()
                | "Manifest" >> beam.Map(lambda found: write_manifest(found, config, encoder))
            )
    except Exception as exc:  # a worker's ShardError arrives wrapped in Beam's own exception
        found = re.search(r"ShardError: (.*)", str(exc))
        if found:
            raise BadInput(found.group(1).strip()) from None
        raise
    manifest_path = output / MANIFEST
    if not manifest_path.exists():
        raise BadInput(f"{output}: the pipeline finished without writing {MANIFEST}")
    manifest = json.loads(manifest_path.read_text())
    entries = manifest["datasets"]
    if len(entries) != len(shards):
        raise BadInput(f"{output}: {len(entries)} datasets written for {len(shards)} shards")
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
        description="Tokenize corpus shards into Megatron indexed datasets (.bin/.idx), one per "
        "shard, with Apache Beam. Unknown options go to Beam (e.g. --direct_num_workers=4, "
        "--runner=DataflowRunner ...).",
    )
    parser.add_argument("corpus", help="corpus output directory (with shards/) or a shard file")
    parser.add_argument("output", help="directory for the .bin/.idx files and manifest.json")
    parser.add_argument("--tokenizer", required=True, help="tokenizer directory (or tokenizer.model)")
    parser.add_argument("--config", help="YAML config whose tokenize: section sets the defaults below")
    parser.add_argument("--no-bos", dest="add_bos", action="store_false", default=None,
                        help="do not start documents with BOS (default: add it)")
    parser.add_argument("--no-eod", dest="append_eod", action="store_false", default=None,
                        help="do not end documents with EOD (default: append it)")
    parser.add_argument("--batch-size", type=int, default=None, help="documents per encode call (default 256)")
    return parser


def section_defaults(path: str | None) -> dict:
    """The `tokenize:` section of a config file (add_bos, append_eod, batch_size)."""
    if path is None:
        return {}
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise BadInput(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise BadInput(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    section = raw.get("tokenize") or {}
    known = {"add_bos", "append_eod", "batch_size"}
    unknown = sorted(set(section) - known)
    if unknown:
        raise BadInput(f"{path}: tokenize: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return section


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog)
    args, beam_args = parser.parse_known_args(argv)
    prog = parser.prog
    started = time.perf_counter()
    try:
        defaults = section_defaults(args.config)
        config = TokenizeConfig(
            corpus=args.corpus,
            output=args.output,
            tokenizer=args.tokenizer,
            add_bos=args.add_bos if args.add_bos is not None else bool(defaults.get("add_bos", True)),
            append_eod=args.append_eod if args.append_eod is not None else bool(defaults.get("append_eod", True)),
            batch_size=args.batch_size if args.batch_size is not None else int(defaults.get("batch_size", 256)),
        )
        manifest = run(config, beam_args)
    except (BadInput, ShardError, TokenizerError) as exc:
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
    sys.exit(main())
