"""Tokenization throughput: our Beam pipeline vs Megatron-LM's `tools/preprocess_data.py` approach.

    .venv/bin/python -m benchmarks.tokenize_corpus [--workers 2] [--repeat 4]

Both tokenize the same documents (all of ../shared/data/ko-train, repeated `--repeat` times so
start-up costs are amortized as on a real corpus) with the same Llama-2 SentencePiece model and
the same number of worker processes, and write Megatron indexed datasets.

The reference is Megatron-LM's loop, re-implemented here: a `multiprocessing.Pool` whose workers
each load the tokenizer, `pool.imap(encoder.encode, jsonl_lines, chunksize=32)` where encode does
`json.loads` + tokenize one document + append EOD, and the main process writes every document
with `IndexedDatasetBuilder.add_document`. Ours: `pipelines.tokenize_corpus` on zstd shards (one
worker per shard, batched encoding, one builder per shard). Prints a table and writes
benchmarks/results/tokenize_corpus.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path


from corpus.shards import write_texts_as_corpus
from stagekit.paths import REPO, KO_TRAIN, LLAMA2_TOKENIZER


class MegatronStyleEncoder:
    """Megatron-LM's `Encoder`: one tokenizer per worker process, one document per call."""

    def initializer(self):
        import sentencepiece as spm

        MegatronStyleEncoder.processor = spm.SentencePieceProcessor(model_file=str(LLAMA2_TOKENIZER))

    def encode(self, line: str):
        text = json.loads(line)["text"]
        processor = MegatronStyleEncoder.processor
        ids = [processor.bos_id(), *processor.encode(text), processor.eos_id()]
        return ids, len(line)


def reference(jsonl: Path, out_prefix: Path, workers: int) -> tuple[int, float]:
    import numpy as np
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    started = time.perf_counter()
    encoder = MegatronStyleEncoder()
    tokens = 0
    with open(jsonl, encoding="utf-8") as lines, multiprocessing.Pool(workers, initializer=encoder.initializer) as pool:
        builder = IndexedDatasetBuilder(str(out_prefix) + ".bin", dtype=np.uint16)
        for ids, _ in pool.imap(encoder.encode, lines, chunksize=32):
            builder.add_document(ids, [len(ids)])
            tokens += len(ids)
        builder.finalize(str(out_prefix) + ".idx")
    return tokens, time.perf_counter() - started


def ours(corpus: Path, out: Path, workers: int) -> tuple[int, float]:
    from pipelines.tokenize_corpus import TokenizeJob, run

    started = time.perf_counter()
    manifest = run(TokenizeJob(corpus=str(corpus), output=str(out), tokenizer=str(LLAMA2_TOKENIZER)),
                   [f"--direct_num_workers={workers}"])
    return manifest["tokens"], time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=4, help="copies of ko-train (default 4, ~26 MB)")
    args = parser.parse_args()
    texts = []
    for name in ("news_comments.txt", "chatbot_qa.txt", "nsmc_raw_reviews.txt"):
        texts += [line.rstrip("\n") for line in open(KO_TRAIN / name, encoding="utf-8") if line.strip()]
    texts = texts * args.repeat
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_texts_as_corpus(tmp / "corpus", texts, num_shards=max(args.workers, 1) * 2)
        jsonl = tmp / "corpus.jsonl"
        with open(jsonl, "w", encoding="utf-8") as handle:
            for index, text in enumerate(texts):
                handle.write(json.dumps({"id": str(index), "text": text}, ensure_ascii=False) + "\n")
        ref_tokens, ref_seconds = reference(jsonl, tmp / "reference", args.workers)
        our_tokens, our_seconds = ours(tmp / "corpus", tmp / "ours", args.workers)
    assert ref_tokens == our_tokens, (ref_tokens, our_tokens)  # same documents, same ids
    rows = [
        ("megatron-lm preprocess_data loop (Pool.imap)", ref_tokens, ref_seconds),
        ("kocpt tokenize (Beam, per-shard batches)", our_tokens, our_seconds),
    ]
    print(f"{len(texts):,} documents, {args.workers} workers, Llama-2 SentencePiece")
    print(f"{'method':<48} {'tokens':>12} {'seconds':>9} {'tokens/s':>12}")
    for name, tokens, seconds in rows:
        print(f"{name:<48} {tokens:>12,} {seconds:>9.2f} {tokens / seconds:>12,.0f}")
    speedup = (our_tokens / our_seconds) / (ref_tokens / ref_seconds)
    print(f"speed-up over the reference: {speedup:.2f}x")
    results = REPO / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "tokenize_corpus.json").write_text(json.dumps({
        "documents": len(texts), "workers": args.workers,
        "reference": {"tokens": ref_tokens, "seconds": ref_seconds, "tokens_per_s": ref_tokens / ref_seconds},
        "ours": {"tokens": our_tokens, "seconds": our_seconds, "tokens_per_s": our_tokens / our_seconds},
        "speedup": speedup,
    }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
