"""Tokenizer benchmark: Korean compression vs added-vocabulary size, English identity, train/merge times.

    python -m benchmarks.tokenizer_bench [--sizes 8000 16000 32000] [--no-variants]

For each size: train a Korean SentencePiece BPE on ../shared/data/ko-train, merge it into Llama-2 in
safe mode capped at exactly that many added pieces, and measure on ko-heldout (news never seen in
training) tokens per character and the byte-token share; on English news, Shakespeare and Python
stdlib code the share of lines with ids identical to Llama-2; HF tokenizers == SentencePiece on the
held-out lines. At 16K it also tries what might move compression (goal <= 0.50 tokens/char):
training-data preparation (prose-like lines only) and piece selection by measured use.
Prints a table and writes benchmarks/results/tokenizer.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path


import sentencepiece as spm

from stagekit.paths import REPO, EN_HELDOUT, EN_SHAKESPEARE, KO_HELDOUT, KO_TRAIN, LLAMA2_TOKENIZER
from tokenizer.comparison import read_lines, stdlib_code_lines
from tokenizer.config import TokenizerConfig
from tokenizer.merge import merge_safe
from tokenizer.spm_hf_export import build_tokenizer
from tokenizer.spm_model import NORMAL, ModelProto, is_hangul_syllable, load_model
from tokenizer.spm_report import measure
from tokenizer.train import TrainConfig, train
from tokenizer.training_text import iter_texts, resolve_inputs, sample, sentences

LLAMA = LLAMA2_TOKENIZER
ENGLISH = [EN_HELDOUT, EN_SHAKESPEARE]
# The Korean model is trained a bit larger than the target: ~6% of its pieces are already in Llama-2
# or are not Hangul, and the merge then keeps exactly `size` pieces (characters first, then BPE order).
OVERSIZE = 1.12


def evaluate(base: ModelProto, merged: ModelProto, korean: list[str], other: dict[str, list[str]]) -> dict:
    sp_base = spm.SentencePieceProcessor(model_proto=base.SerializeToString())
    sp = spm.SentencePieceProcessor(model_proto=merged.SerializeToString())
    ko = measure(sp, korean)
    same = total = 0
    for lines in other.values():
        same += sum(a == b for a, b in zip(sp_base.encode(lines), sp.encode(lines)))
        total += len(lines)
    started = time.perf_counter()
    hf = build_tokenizer(merged, add_bos=False)
    hf_ids = [e.ids for e in hf.encode_batch(korean)]
    hf_seconds = time.perf_counter() - started
    return {"ko_tokens_per_char": ko["tokens_per_char"], "ko_tokens_per_word": ko["tokens_per_word"],
            "ko_byte_token_share": ko["byte_token_share"], "english_code_identity": round(same / total, 6),
            "hf_agreement_ko": round(sum(a == b for a, b in zip(hf_ids, sp.encode(korean))) / len(korean), 6),
            "hf_build_encode_seconds": round(hf_seconds, 2)}


def run(name: str, base: ModelProto, inputs: list[str], vocab: int, cap: int, korean, other, workdir: Path,
        select_from: ModelProto | None = None) -> dict:
    started = time.perf_counter()
    if select_from is None:
        summary = train(TrainConfig(inputs=inputs, output=str(workdir / name), tokenizer=TokenizerConfig(vocab_size=vocab)))
        added_model = load_model(workdir / f"{name}.model")
        train_seconds = summary["train_seconds"]
    else:
        added_model, train_seconds = select_from, 0.0
    started = time.perf_counter()
    merged, stats = merge_safe(base, [added_model], max_added=cap)
    merge_seconds = time.perf_counter() - started
    row = {"variant": name, "korean_model_pieces": len(added_model.pieces), "added": stats.added,
           "unreachable_found": stats.unreachable_found, "intermediates_added": stats.intermediates_added,
           "unreachable_dropped": stats.unreachable_dropped, "train_seconds": train_seconds,
           "merge_seconds": round(merge_seconds, 2)}
    row.update(evaluate(base, merged, korean, other))
    print(f"{name:<34} added={row['added']:>6,} tokens/char={row['ko_tokens_per_char']:.4f} "
          f"bytes={row['ko_byte_token_share']:.2%} identity={row['english_code_identity']:.2%} "
          f"hf==spm={row['hf_agreement_ko']:.2%} train={row['train_seconds']:.1f}s merge={row['merge_seconds']:.1f}s", flush=True)
    return row


def selected_by_use(base: ModelProto, big: ModelProto, target: int, training_sentences: list[str]) -> ModelProto:
    """Keep the `target` pieces of a larger model that the merged tokenizer uses most on training text."""
    merged, _ = merge_safe(base, [big])
    sp = spm.SentencePieceProcessor(model_proto=merged.SerializeToString())
    use = Counter(i for ids in sp.encode(training_sentences) for i in ids)
    n = len(base.pieces)
    ranked = sorted(range(n, len(merged.pieces)), key=lambda i: (len(merged.pieces[i].piece) > 1, -use[i]))
    keep = {merged.pieces[i].piece for i in ranked[:target]}
    subset = ModelProto()
    subset.CopyFrom(big)
    del subset.pieces[:]
    for piece in big.pieces:
        if piece.type != NORMAL or piece.piece in keep:
            subset.pieces.add().CopyFrom(piece)
    return subset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8000, 16000, 32000])
    parser.add_argument("--no-variants", dest="variants", action="store_false", help="skip the 16K experiments")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "tokenizer.json"))
    args = parser.parse_args()

    base = load_model(LLAMA)
    korean = read_lines(KO_HELDOUT, 10**9)
    other = {str(p): read_lines(p, 10**9) for p in ENGLISH}
    other["python-stdlib"] = stdlib_code_lines(200, 20000)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-tokenizer-") as tmp:
        workdir = Path(tmp)
        inputs = [str(KO_TRAIN)]
        for size in args.sizes:
            rows.append(run(f"plain vocab={size}", base, inputs, size, 0, korean, other, workdir) | {"size": size})
            rows.append(run(f"sized added={size}", base, inputs, int(size * OVERSIZE), size, korean, other, workdir)
                        | {"size": size})
        if args.variants:
            target = 16000
            # Training-data preparation: only prose-like lines (>= 20 Hangul syllables): fewer pieces
            # spent on chat fillers (ㅋㅋ, ㅠㅠ) and emoticons.
            texts = [line.strip() for line in iter_texts(resolve_inputs(inputs))]
            prose = [line for line in texts if sum(map(is_hangul_syllable, line)) >= 20]
            prose_file = workdir / "prose.txt"
            prose_file.write_text("\n".join(prose) + "\n", encoding="utf-8")
            rows.append(run("prose lines only, added=16000", base, [str(prose_file)], int(target * OVERSIZE), target,
                            korean, other, workdir) | {"size": target, "training_lines": len(prose)})
            # Piece selection by measured use: train 32K, keep the 16K pieces used most on ko-train.
            train(TrainConfig(inputs=inputs, output=str(workdir / "big"), tokenizer=TokenizerConfig(vocab_size=32000)))
            big = load_model(workdir / "big.model")
            training, _, _ = sample(sentences(iter_texts(resolve_inputs(inputs)), 4192), 0, 1, True)
            subset = selected_by_use(base, big, target, training)
            rows.append(run("32K model, 16K most-used pieces", base, inputs, 0, target, korean, other, workdir,
                            select_from=subset) | {"size": target})
    result = {"benchmark": "tokenizer", "heldout": str(KO_HELDOUT), "goal_tokens_per_char_at_16k": 0.50,
              "llama2_tokens_per_char": measure(spm.SentencePieceProcessor(model_file=str(LLAMA)), korean)["tokens_per_char"],
              "rows": rows}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"Llama-2 alone: {result['llama2_tokens_per_char']:.4f} tokens/char; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
