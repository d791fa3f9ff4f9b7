"""Which vocabulary-expansion choices matter? A small real experiment at equal compute.

    python benchmarks/ablation.py [--quick] [--work-dir DIR] [--out benchmarks/results/ablation.json]

1. Pretrain a small Llama-shaped model (a few million parameters) on English with the base
   tokenizer: it stands for "Llama-2 before Korean".
2. Continue on Korean (ko-train) five ways, each for the same number of training tokens
   (the same compute up to the LM head's share, which grows with the vocabulary; reported):
   no expansion; expansion with random, mean and fvt initialization of the new rows; and fvt
   with an embeddings-only first stage (new embedding and LM-head rows trained alone first, as
   Chinese-LLaMA and EEVE do).
3. Report Korean and English bits per character (tokenizer-independent) at step 0, along the way
   and at the end, and Korean tokens per character; as a table, JSON and a PNG plot.

Training here is plain PyTorch on Hugging Face's LlamaForCausalLM (what matters is the
initialization, not the parallel framework); the resize and the bits-per-character code are the
product's own (`checkpoints.resize`, `evaluation.bpc`).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"

from checkpoints.resize import ResizeConfig, resize  # noqa: E402
from evaluation.bpc import score_texts  # noqa: E402


@dataclass
class Settings:
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    seq: int = 128
    batch: int = 8
    en_steps: int = 400
    ko_steps: int = 200
    stage1_fraction: float = 0.25  # share of the Korean steps that train embeddings only
    lr: float = 2e-3
    ko_vocab: int = 8000
    eval_docs: int = 200
    evals: int = 4  # evaluation points along the Korean run (plus step 0)
    seed: int = 1234


def sh(*args) -> None:
    subprocess.run([sys.executable, *map(str, args)], check=True, cwd=REPO, stdout=subprocess.DEVNULL)


def lines(path: Path, limit: int | None = None) -> list[str]:
    out = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return out[:limit] if limit else out


def hf_tokenizer(directory: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))


def packed_batches(tokenizer, texts: list[str], settings: Settings, steps: int, seed: int):
    """`steps` batches of [batch, seq+1] token windows from the texts, BOS-separated and packed."""
    rng = random.Random(seed)
    texts = list(texts)
    rng.shuffle(texts)
    ids = [tid for chunk in tokenizer(texts, add_special_tokens=False)["input_ids"] for tid in [tokenizer.bos_token_id, *chunk]]
    window = settings.seq + 1
    starts = list(range(0, len(ids) - window, window))
    needed = steps * settings.batch
    order = [starts[i % len(starts)] for i in range(needed)]  # wraps (epochs) when data is short
    rng.shuffle(order)
    data = torch.tensor(ids)
    for step in range(steps):
        rows = order[step * settings.batch : (step + 1) * settings.batch]
        yield torch.stack([data[s : s + window] for s in rows])


def train(model, batches, steps: int, lr: float, trainable=None, on_step=None):
    params = [p for n, p in model.named_parameters() if trainable is None or trainable(n)]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    model.train()
    for step, batch in enumerate(batches, 1):
        loss = _lm_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if on_step:
            on_step(step, loss.item())


def _lm_loss(model, batch):
    logits = model(input_ids=batch[:, :-1]).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))


def evaluate(model, tokenizer, ko_docs, en_docs) -> dict:
    ko = score_texts(model, tokenizer, ko_docs, name="ko", progress=False, context=256)
    en = score_texts(model, tokenizer, en_docs, name="en", progress=False, context=256)
    return {"ko_bpc": ko.bits_per_char, "en_bpc": en.bits_per_char, "ko_tokens_per_char": ko.tokens / ko.characters}


def flops_per_token(model) -> float:
    """6 × parameters that do matrix work per token (the input embedding lookup does not)."""
    params = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n)
    return 6.0 * params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=REPO / "benchmarks" / "results" / "ablation-work")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ablation.json")
    parser.add_argument("--base-tokenizer", type=Path, default=SHARED / "llama2-tokenizer" / "tokenizer.model")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny step counts")
    parser.add_argument("--en-steps", type=int, help=f"English pretraining steps (default {Settings.en_steps})")
    parser.add_argument("--ko-steps", type=int, help=f"Korean steps per variant (default {Settings.ko_steps})")
    parser.add_argument("--eval-docs", type=int, help=f"held-out documents per language (default {Settings.eval_docs})")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.quick:
        settings = Settings(en_steps=20, ko_steps=12, eval_docs=20, evals=2, ko_vocab=2000)
    for name in ("en_steps", "ko_steps", "eval_docs"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    torch.manual_seed(settings.seed)
    torch.set_num_threads(2)
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()

    # Tokenizers: the base as a HF directory, and base + Korean pieces (safe merge).
    from sentencepiece import sentencepiece_model_pb2

    from tokenizer.hf_export import write_hf_files

    base_dir, merged_dir = work / "tok-base", work / "tok-merged"
    if not (base_dir / "tokenizer.json").is_file():
        base_dir.mkdir(exist_ok=True)
        shutil.copy(args.base_tokenizer, base_dir / "tokenizer.model")
        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString(args.base_tokenizer.read_bytes())
        write_hf_files(proto, base_dir)
    if not (merged_dir / "tokenizer.json").is_file():
        sh(REPO / "tokenizer" / "train.py", "--input", SHARED / "ko-train", "--output", work / "ko",
           "--vocab-size", settings.ko_vocab)
        sh(REPO / "tokenizer" / "merge.py", "--base", args.base_tokenizer, "--add", work / "ko.model",
           "--output", merged_dir, "--overwrite", "--no-plot")
    base_tok, merged_tok = hf_tokenizer(base_dir), hf_tokenizer(merged_dir)

    ko_train = [t for f in sorted((SHARED / "ko-train").glob("*.txt")) for t in lines(f)]
    en_train = lines(SHARED / "en" / "tinyshakespeare.txt")
    ko_eval = lines(SHARED / "ko-heldout" / "korean-english-park.test.ko", settings.eval_docs)
    en_eval = lines(SHARED / "en" / "korean-english-park.test.en", settings.eval_docs)

    # 1. "Llama-2 before Korean": a small model pretrained on English with the base tokenizer.
    from transformers import LlamaConfig, LlamaForCausalLM

    base_model_dir = work / "base-en"
    if not (base_model_dir / "config.json").is_file():
        config = LlamaConfig(vocab_size=len(base_tok), hidden_size=settings.hidden, intermediate_size=settings.hidden * 8 // 3,
                             num_hidden_layers=settings.layers, num_attention_heads=settings.heads,
                             num_key_value_heads=settings.heads, max_position_embeddings=512, tie_word_embeddings=False)
        model = LlamaForCausalLM(config)
        print(f"pretraining the English base model: {settings.en_steps} steps", flush=True)
        train(model, packed_batches(base_tok, en_train, settings, settings.en_steps, settings.seed),
              settings.en_steps, settings.lr,
              on_step=lambda s, l: print(f"  en step {s:4d} loss {l:.3f}", flush=True) if s % 50 == 0 else None)
        model.save_pretrained(base_model_dir, safe_serialization=True)
        shutil.copy(args.base_tokenizer, base_model_dir / "tokenizer.model")

    # 2. Korean continuation, five ways, equal tokens.
    variants = {
        "no-expansion": {"init": None, "stage1": False},
        "random": {"init": "random", "stage1": False},
        "mean": {"init": "mean", "stage1": False},
        "fvt": {"init": "fvt", "stage1": False},
        "fvt+embeddings-stage": {"init": "fvt", "stage1": True},
    }
    results = {}
    for name, variant in variants.items():
        if variant["init"] is None:
            model_dir, tokenizer = base_model_dir, base_tok
        else:
            model_dir = work / f"resized-{variant['init']}"
            if not (model_dir / "config.json").is_file():
                resize(ResizeConfig(model=base_model_dir, tokenizer=merged_dir, output=model_dir, init=variant["init"],
                                    base_tokenizer=args.base_tokenizer, overwrite=True), progress=False)
            tokenizer = merged_tok
        model = LlamaForCausalLM.from_pretrained(model_dir)
        torch.manual_seed(settings.seed)
        curve = [{"step": 0, **evaluate(model, tokenizer, ko_eval, en_eval)}]
        print(f"{name:>22}: step 0 ko {curve[0]['ko_bpc']:.3f} en {curve[0]['en_bpc']:.3f} bits/char", flush=True)
        eval_every = max(1, settings.ko_steps // settings.evals)
        stage1_steps = int(settings.ko_steps * settings.stage1_fraction) if variant["stage1"] else 0
        batches = packed_batches(tokenizer, ko_train, settings, settings.ko_steps, settings.seed + 1)
        losses = []

        def on_step(step, loss, offset=0):
            losses.append(loss)
            if (step + offset) % eval_every == 0:
                curve.append({"step": step + offset, "loss": loss, **evaluate(model, tokenizer, ko_eval, en_eval)})

        if stage1_steps:
            train(model, (next(batches) for _ in range(stage1_steps)), stage1_steps, settings.lr,
                  trainable=lambda n: "embed_tokens" in n or "lm_head" in n, on_step=on_step)
        rest = settings.ko_steps - stage1_steps
        train(model, batches, rest, settings.lr, on_step=lambda s, l: on_step(s, l, stage1_steps))
        tokens = settings.ko_steps * settings.batch * settings.seq
        results[name] = {"curve": curve, "train_tokens": tokens, "train_flops": tokens * flops_per_token(model),
                         "vocab": model.config.vocab_size, "final_loss": losses[-1]}
        print(f"{name:>22}: end    ko {curve[-1]['ko_bpc']:.3f} en {curve[-1]['en_bpc']:.3f} bits/char "
              f"(tokens/char {curve[-1]['ko_tokens_per_char']:.3f})", flush=True)

    report = {"settings": asdict(settings), "base_tokenizer": str(args.base_tokenizer), "results": results,
              "seconds": round(time.time() - started, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print_table(results)
    plot(results, args.out.with_suffix(".png"))
    print(f"\nwrote {args.out} and {args.out.with_suffix('.png')} in {report['seconds'] / 60:.1f} min")
    return 0


def print_table(results: dict) -> None:
    print(f"\n{'variant':<22} {'ko bpc 0':>9} {'ko bpc end':>10} {'en bpc 0':>9} {'en bpc end':>10} "
          f"{'ko tok/char':>11} {'GFLOPs':>8}")
    for name, r in results.items():
        first, last = r["curve"][0], r["curve"][-1]
        print(f"{name:<22} {first['ko_bpc']:>9.3f} {last['ko_bpc']:>10.3f} {first['en_bpc']:>9.3f} {last['en_bpc']:>10.3f} "
              f"{last['ko_tokens_per_char']:>11.3f} {r['train_flops'] / 1e9:>8.0f}")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, r in results.items():
        steps = [p["step"] for p in r["curve"]]
        axes[0].plot(steps, [p["ko_bpc"] for p in r["curve"]], marker="o", label=name)
        axes[1].plot(steps, [p["en_bpc"] for p in r["curve"]], marker="o", label=name)
    axes[0].set_title("Korean bits per character (ko-heldout)")
    axes[1].set_title("English bits per character (en news)")
    for ax in axes:
        ax.set_xlabel("Korean training step (equal tokens)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
