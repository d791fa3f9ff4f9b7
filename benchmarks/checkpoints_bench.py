"""Benchmark the checkpoint stage: resize and HF → Megatron → HF on a ~1B Llama, and new-row init.

    .venv/bin/python -m benchmarks.checkpoints_bench [--work DIR] [--train-steps 200]
    .venv/bin/python -m benchmarks.checkpoints_bench --size 7b      # the real size: ~30 GB disk, ~14 GB RAM

1. A random Llama of about 1B parameters (hidden 2048, 16 layers, vocabulary 32,000) is written
   to disk in bf16, with Llama-2's tokenizer.model beside it.
2. A merged tokenizer is made as the tokenizer stage does it (Korean SentencePiece BPE trained on
   `../shared/data/ko-train`, its pieces that Llama-2 lacks appended with scores below the base's).
3. `resize`, `convert --to megatron` and `convert --to hf` run as separate processes; each one's
   wall time and peak RSS (`wait4`) are reported as a ratio to the model's size on disk, and the
   round trip is checked bit for bit.
4. Initial Korean loss of fvt (mean and EEVE-style first-piece LM head), mean and random init:
   a small Llama is trained for a few hundred steps on Korean text with the base tokenizer,
   resized each way, and evaluated on held-out Korean prose (ko-heldout) with the merged tokenizer.
Writes benchmarks/results/checkpoints.json and prints a table.

`--size 7b` runs steps 1 and 3 only, at Llama-2-7B's shape (13.5 GB of bf16) with a merged
tokenizer from a 16K Korean model (~47K rows): each file set is removed as soon as the next step
has read it, and the round trip is checked against per-tensor SHA-256 digests of the resized
model, so at most two 13.5 GB copies are on disk at once. Writes checkpoints-7b.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


from checkpoints.hf_io import write_safetensors_shards
from checkpoints.config import ResizeSection
from checkpoints.resize import ResizeJob, resize
from mcore_llama.hf_checkpoint import HFCheckpoint
from stagekit.paths import REPO, EN_SHAKESPEARE, KO_HELDOUT, KO_TRAIN, LLAMA2_TOKENIZER

GiB = 1024**3


def korean_lines(limit: int) -> list[str]:
    lines = []
    for name in ("nsmc_raw_reviews.txt", "chatbot_qa.txt", "news_comments.txt"):
        with open(KO_TRAIN / name, encoding="utf-8") as f:
            lines += [line.strip() for _, line in zip(range(limit // 3), f) if line.strip()]
    return lines


def make_merged_tokenizer(out: Path, vocab_size: int = 8000) -> int:
    """Korean BPE pieces appended to Llama-2's tokenizer.model (scores below all base scores)."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    out.mkdir(parents=True, exist_ok=True)
    text = out / "train.txt"
    text.write_text("\n".join(korean_lines(30000)) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(out / "ko"), vocab_size=vocab_size, model_type="bpe",
        character_coverage=0.9995, byte_fallback=True, split_digits=True, add_dummy_prefix=True,
        remove_extra_whitespaces=False, normalization_rule_name="identity", minloglevel=2,
    )
    base, ko = pb.ModelProto(), pb.ModelProto()
    base.ParseFromString(LLAMA2_TOKENIZER.read_bytes())
    ko.ParseFromString((out / "ko.model").read_bytes())
    have = {p.piece for p in base.pieces}
    floor = min(p.score for p in base.pieces)
    added = 0
    for p in ko.pieces:
        if p.type == pb.ModelProto.SentencePiece.NORMAL and p.piece not in have:
            added += 1
            base.pieces.add(piece=p.piece, score=floor - added, type=pb.ModelProto.SentencePiece.NORMAL)
    (out / "tokenizer.model").write_bytes(base.SerializeToString())
    (out / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    for f in ("train.txt", "ko.model", "ko.vocab"):
        (out / f).unlink()
    return added


def llama_config(vocab: int, hidden: int, inter: int, layers: int, heads: int, kv: int) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab,
        "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv, "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False, "hidden_act": "silu",
        "initializer_range": 0.02, "bos_token_id": 1, "eos_token_id": 2, "dtype": "bfloat16",
    }


def write_random_llama(out: Path, config: dict, label: str = "writing 1B model") -> int:
    """A random bf16 Llama written tensor by tensor (never the whole model in memory)."""
    out.mkdir(parents=True, exist_ok=True)
    h, i, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    kv = config["num_key_value_heads"] * h // config["num_attention_heads"]
    specs = [("model.embed_tokens.weight", (v, h))]
    for n in range(config["num_hidden_layers"]):
        p = f"model.layers.{n}"
        specs += [(f"{p}.input_layernorm.weight", (h,)), (f"{p}.self_attn.q_proj.weight", (h, h)),
                  (f"{p}.self_attn.k_proj.weight", (kv, h)), (f"{p}.self_attn.v_proj.weight", (kv, h)),
                  (f"{p}.self_attn.o_proj.weight", (h, h)), (f"{p}.post_attention_layernorm.weight", (h,)),
                  (f"{p}.mlp.gate_proj.weight", (i, h)), (f"{p}.mlp.up_proj.weight", (i, h)),
                  (f"{p}.mlp.down_proj.weight", (h, i))]
    specs += [("model.norm.weight", (h,)), ("lm_head.weight", (v, h))]
    gen = torch.Generator().manual_seed(0)

    def make(name):
        shape = dict(specs)[name]
        if len(shape) == 1:
            return (1 + 0.1 * torch.randn(shape, generator=gen)).to(torch.bfloat16)
        return (0.02 * torch.randn(shape, generator=gen)).to(torch.bfloat16)

    write_safetensors_shards(out, [(n, s, torch.bfloat16) for n, s in specs], make, max_shard_bytes=GiB, progress=label)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    shutil.copy(LLAMA2_TOKENIZER, out / "tokenizer.model")
    return sum(math.prod(s) for _, s in specs)


def timed_process(args: list[str]) -> dict:
    """Run a checkpoint command as its own process: wall time and the peak RSS it reports.

    The command reports its own VmHWM: rusage of a child also counts the resident set it
    inherited from this (large) benchmark process at fork.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    line = result.stdout.strip().splitlines()[-1]
    match = re.search(r"peak RSS ([0-9.]+) GiB", line)
    if not match:
        raise SystemExit(f"no peak RSS in the output of {' '.join(args)}: {line!r}")
    return {"seconds": time.perf_counter() - started, "peak_rss_bytes": int(float(match.group(1)) * GiB), "stdout": line}


def same_tensors(a: Path, b: Path) -> bool:
    ha, hb = HFCheckpoint(a), HFCheckpoint(b)
    if sorted(ha.tensors) != sorted(hb.tensors):
        return False
    return all(torch.equal(ha.read(n), hb.read(n)) for n in ha.tensors)


def tensor_digests(model_dir: Path) -> dict[str, tuple]:
    """(dtype, shape, SHA-256 of the bytes) per tensor, read one tensor at a time."""
    import hashlib

    checkpoint = HFCheckpoint(model_dir)
    digests = {}
    for name in sorted(checkpoint.tensors):
        tensor = checkpoint.read(name).contiguous()
        raw = tensor.view(torch.uint8) if tensor.dim() else tensor.reshape(1).view(torch.uint8)
        digests[name] = (str(tensor.dtype), tuple(tensor.shape), hashlib.sha256(raw.numpy().tobytes()).hexdigest())
    return digests


def seven_b(work: Path, output: Path) -> int:
    """Resize and HF -> Megatron -> HF at Llama-2-7B's shape; each 13.5 GB set removed when read."""
    merged = work / "merged-tokenizer"
    added = make_merged_tokenizer(merged, vocab_size=16000)
    base = work / "llama-2-7b-shaped"
    params = write_random_llama(base, llama_config(32000, 4096, 11008, 32, 32, 32), label="writing 7B model")
    size_on_disk = sum(f.stat().st_size for f in base.glob("*.safetensors"))
    resized, megatron, back = work / "resized", work / "megatron", work / "back"
    runs = {"resize": timed_process(["-m", "checkpoints.resize", "--model", str(base), "--tokenizer", str(merged),
                                     "--output", str(resized), "--overwrite"])}
    shutil.rmtree(base)
    resized_size = sum(f.stat().st_size for f in resized.glob("*.safetensors"))
    rows = json.loads((resized / "config.json").read_text())["vocab_size"]
    runs["hf_to_megatron"] = timed_process(["-m", "checkpoints.convert", "--to", "megatron", "--input", str(resized),
                                            "--output", str(megatron), "--overwrite"])
    digests = tensor_digests(resized)
    shutil.rmtree(resized)
    runs["megatron_to_hf"] = timed_process(["-m", "checkpoints.convert", "--to", "hf", "--input", str(megatron),
                                            "--output", str(back), "--tokenizer", str(merged), "--overwrite"])
    shutil.rmtree(megatron)
    round_trip = tensor_digests(back) == digests
    shutil.rmtree(back)
    for name, run in runs.items():
        run["model_bytes_on_disk"] = size_on_disk if name == "resize" else resized_size
        run["peak_rss_over_model_size"] = run["peak_rss_bytes"] / run["model_bytes_on_disk"]
    result = {"model": {"parameters": params, "bytes_on_disk_bf16": size_on_disk, "shape": "Llama-2-7B",
                        "resized_vocab_rows": rows},
              "merged_tokenizer_added_pieces": added, "runs": runs, "round_trip_bit_identical": round_trip}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"model: {params / 1e9:.2f}B parameters, {size_on_disk / GiB:.2f} GiB bf16; merged tokenizer "
          f"+{added} pieces -> {rows:,} rows")
    print(f"{'step':<16}{'seconds':>9}{'peak RSS GiB':>14}{'x model size':>14}")
    for name, run in runs.items():
        print(f"{name:<16}{run['seconds']:>9.1f}{run['peak_rss_bytes'] / GiB:>14.2f}{run['peak_rss_over_model_size']:>14.2f}")
    print(f"HF -> Megatron -> HF bit-identical: {round_trip}")
    print(f"wrote {output}")
    return 0 if round_trip else 1


# ---------------------------------------------------------------------- initial Korean loss


def train_small_llama(out: Path, steps: int, seq: int = 128, batch: int = 8) -> dict:
    """A small Llama (Llama-2 vocabulary) that has seen some Korean and English text."""
    import sentencepiece as spm
    from transformers import LlamaConfig, LlamaForCausalLM

    sp = spm.SentencePieceProcessor(model_file=str(LLAMA2_TOKENIZER))
    english = EN_SHAKESPEARE.read_text(encoding="utf-8").split("\n\n")[:3000]
    ids: list[int] = []
    for text in korean_lines(24000) + english:
        ids += [1] + sp.encode(text)
    data = torch.tensor(ids)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32000, hidden_size=128, intermediate_size=344, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    losses = []
    from tqdm import tqdm

    for step in tqdm(range(steps), desc="training the small model", file=sys.stderr):
        starts = torch.randint(0, len(data) - seq - 1, (batch,))
        x = torch.stack([data[s : s + seq] for s in starts])
        loss = model(x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        for g in opt.param_groups:
            g["lr"] = 3e-3 * min(1.0, (steps - step) / (0.3 * steps))
        losses.append(loss.item())
    model.save_pretrained(out)
    shutil.copy(LLAMA2_TOKENIZER, out / "tokenizer.model")
    return {"train_tokens_seen": steps * batch * seq, "final_train_loss": sum(losses[-20:]) / 20}


@torch.no_grad()
def korean_loss(model_dir: Path, tokenizer_model: Path, sentences: list[str]) -> dict:
    import sentencepiece as spm
    from transformers import LlamaForCausalLM

    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    total_nats, tokens, chars, new_tokens = 0.0, 0, 0, 0
    for text in sentences:
        ids = torch.tensor([[1] + sp.encode(text)])
        logits = model(ids).logits[0, :-1]
        nll = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum")
        total_nats += float(nll)
        tokens += ids.shape[1] - 1
        chars += len(text)
        new_tokens += int((ids[0, 1:] >= 32000).sum())
    return {"loss_per_token": total_nats / tokens, "bits_per_char": total_nats / math.log(2) / chars,
            "tokens": tokens, "new_token_share": new_tokens / tokens}


def init_loss_experiment(work: Path, merged: Path, steps: int) -> dict:
    small = work / "small"
    trained = train_small_llama(small, steps)
    sentences = [s.strip() for s in KO_HELDOUT.read_text(encoding="utf-8").splitlines() if s.strip()][:300]
    results = {"small_model": trained, "heldout_sentences": len(sentences),
               "before_resize_base_tokenizer": korean_loss(small, LLAMA2_TOKENIZER, sentences)}
    variants = {"fvt": ("fvt", "mean"), "fvt_eeve_first_piece_head": ("fvt", "first"), "mean": ("mean", "mean"), "random": ("random", "mean")}
    for name, (init, head) in variants.items():
        out = work / f"small-{name}"
        resize(ResizeJob(model=small, tokenizer=merged, output=out, section=ResizeSection(init=init, lm_head=head), overwrite=True),
               progress=False)
        results[name] = korean_loss(out, merged / "tokenizer.model", sentences)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="scratch directory (default: a temporary one, removed after)")
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--intermediate", type=int, default=5632)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--train-steps", type=int, default=150, help="steps for the small model of the init comparison")
    parser.add_argument("--size", choices=("1b", "7b"), default="1b",
                        help="1b: the ~1B model (--hidden etc.) and the init comparison; 7b: Llama-2-7B's shape, "
                             "resize and round trip only (needs ~30 GB free disk)")
    parser.add_argument("--output", type=Path, help="JSON result (default benchmarks/results/checkpoints[-7b].json)")
    args = parser.parse_args(argv)
    if args.size == "7b":
        shape_flags = [flag for flag, value in (("--hidden", args.hidden != 2048), ("--intermediate", args.intermediate != 5632),
                       ("--layers", args.layers != 16), ("--heads", args.heads != 16)) if value]
        if shape_flags:
            parser.error(f"--size 7b fixes the shape: {', '.join(shape_flags)} not used")
    output = args.output or REPO / "benchmarks" / "results" / ("checkpoints-7b.json" if args.size == "7b" else "checkpoints.json")
    work = args.work or Path(tempfile.mkdtemp(prefix="kocpt-bench-ckpt-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.size == "7b":
        try:
            return seven_b(work, output)
        finally:
            if args.work is None:
                shutil.rmtree(work, ignore_errors=True)
    try:
        merged = work / "merged-tokenizer"
        added = make_merged_tokenizer(merged)
        base = work / "llama-1b"
        params = write_random_llama(base, llama_config(32000, args.hidden, args.intermediate, args.layers, args.heads, args.heads))
        size_on_disk = sum(f.stat().st_size for f in base.glob("*.safetensors"))
        runs = {
            "resize": timed_process(["-m", "checkpoints.resize", "--model", str(base), "--tokenizer", str(merged), "--output", str(work / "resized"), "--overwrite"]),
            "hf_to_megatron": timed_process(["-m", "checkpoints.convert", "--to", "megatron", "--input", str(work / "resized"), "--output", str(work / "megatron"), "--overwrite"]),
            "megatron_to_hf": timed_process(["-m", "checkpoints.convert", "--to", "hf", "--input", str(work / "megatron"), "--output", str(work / "back"), "--tokenizer", str(merged), "--overwrite"]),
        }
        resized_size = sum(f.stat().st_size for f in (work / "resized").glob("*.safetensors"))
        for name, run in runs.items():
            ref = size_on_disk if name == "resize" else resized_size
            run["model_bytes_on_disk"] = ref
            run["peak_rss_over_model_size"] = run["peak_rss_bytes"] / ref
        round_trip = same_tensors(work / "resized", work / "back")
        # The fixed cost of each step (interpreter, torch, Megatron): the same steps on a tiny model.
        tiny = work / "tiny"
        write_random_llama(tiny, llama_config(32000, 64, 128, 1, 2, 2))
        baseline = {
            "resize": timed_process(["-m", "checkpoints.resize", "--model", str(tiny), "--tokenizer", str(merged), "--output", str(work / "tiny-resized"), "--overwrite"]),
            "hf_to_megatron": timed_process(["-m", "checkpoints.convert", "--to", "megatron", "--input", str(work / "tiny-resized"), "--output", str(work / "tiny-megatron"), "--overwrite"]),
            "megatron_to_hf": timed_process(["-m", "checkpoints.convert", "--to", "hf", "--input", str(work / "tiny-megatron"), "--output", str(work / "tiny-back"), "--overwrite"]),
        }
        baseline = {name: run["peak_rss_bytes"] for name, run in baseline.items()}
        init = init_loss_experiment(work, merged, args.train_steps)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    # 7B: each step's fixed process overhead (the same step on a tiny model) plus its measured
    # per-byte cost, applied to Llama-2-7B's 13.5 GB of bf16.
    seven_b_bytes = 6.74e9 * 2
    estimate_7b = {
        name: (baseline[name] + (runs[name]["peak_rss_bytes"] - baseline[name]) / runs[name]["model_bytes_on_disk"] * seven_b_bytes) / GiB
        for name in runs
    }
    result = {
        "model": {"parameters": params, "bytes_on_disk_bf16": size_on_disk, "hidden": args.hidden, "layers": args.layers},
        "merged_tokenizer_added_pieces": added,
        "runs": runs,
        "round_trip_bit_identical": round_trip,
        "fixed_process_rss_bytes": baseline,
        "estimate_7b_peak_rss_gib": estimate_7b,
        "initial_korean_loss": init,
        "target_peak_rss_over_model_size": 1.2,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")

    print(f"model: {params / 1e9:.2f}B parameters, {size_on_disk / GiB:.2f} GiB bf16; merged tokenizer +{added} pieces")
    print(f"{'step':<16}{'seconds':>9}{'peak RSS GiB':>14}{'x model size':>14}{'7B est. GiB':>13}")
    for name, run in runs.items():
        print(f"{name:<16}{run['seconds']:>9.1f}{run['peak_rss_bytes'] / GiB:>14.2f}{run['peak_rss_over_model_size']:>14.2f}{estimate_7b[name]:>13.1f}")
    print(f"HF -> Megatron -> HF bit-identical: {round_trip}")
    print(f"\ninitial loss on {init['heldout_sentences']} held-out Korean sentences (small model, {init['small_model']['train_tokens_seen']:,} tokens seen)")
    print(f"{'init':<28}{'loss/token':>11}{'bits/char':>11}{'new-token share':>17}")
    for name in ("before_resize_base_tokenizer", "fvt", "fvt_eeve_first_piece_head", "mean", "random"):
        r = init[name]
        print(f"{name:<28}{r['loss_per_token']:>11.3f}{r['bits_per_char']:>11.3f}{r['new_token_share']:>17.2%}")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
