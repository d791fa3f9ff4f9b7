"""Which vocabulary-expansion choices matter? A small real experiment at equal training FLOPs.

    python -m benchmarks.ablation [--quick] [--seeds N] [--cache-dir DIR] [--out benchmarks/results/ablation.json]

1. The stand-in for "Llama-2 before Korean": a small Llama pretrained with the base tokenizer on
   English plus a small Korean share (benchmarks/ablation_standin.py says which text), and a twin
   with no Korean to show that the stand-in knows some Korean. Both are cached.
2. The continuation as users run it: ko-train blended with English replay, at equal training
   FLOPs (a variant with a larger LM head gets fewer steps), seven ways: no expansion; expansion
   with random, mean, Hugging Face's default (`resize_token_embeddings(mean_resizing=True)`) and
   FVT initialization; FVT with an embeddings-only first stage; FVT with a new-rows-only first
   stage. Every variant runs at the main replay share with several seeds; the sweep variants also
   run at the other replay shares.
3. Korean and English bits per character (tokenizer-independent) at step 0, along the way and at
   the end; Korean tokens per character; steps to reach the no-expansion variant's final Korean
   bits per character. A table (mean ± sample standard deviation over seeds), JSON and a PNG plot.

Training is plain PyTorch on Hugging Face's LlamaForCausalLM (what matters is the initialization
and the recipe, not the parallel framework); the tokenizer stage, the resize with its
initializations (`checkpoints.resize`, `checkpoints.vocab_init`) and the bits-per-character code
(`evaluation.bpc`) are the product's own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch


from benchmarks.ablation_report import plot, print_table, summarize
from benchmarks.ablation_standin import (
    DEFAULT_CACHE, ModelShape, StandinSettings, base_tokenizer_dir, blended_batches, evaluate, flops_per_token,
    hf_tokenizer, lines, merged_tokenizer_dir, pretrain_standin, token_stream, train)
from checkpoints.config import ResizeSection
from checkpoints.resize import ResizeJob, resize
from stagekit.paths import REPO, EN_HELDOUT, EN_SHAKESPEARE, KO_HELDOUT, KO_TRAIN, LLAMA2_TOKENIZER

# name: (new-row init or None for no expansion, first stage: None | "embeddings" | "new-rows")
VARIANTS = {
    "no-expansion": (None, None),
    "random": ("random", None),
    "mean": ("mean", None),
    "hf-default": ("hf-default", None),
    "fvt": ("fvt", None),
    "fvt+embeddings-stage": ("fvt", "embeddings"),
    "fvt+new-rows-stage": ("fvt", "new-rows"),
}


@dataclass
class Settings:
    shape: ModelShape = field(default_factory=ModelShape)
    standin_steps: int = 300
    standin_korean_share: float = 0.05
    ko_steps: int = 60            # continuation steps of the no-expansion variant: the FLOPs budget
    stage1_fraction: float = 0.25  # share of a staged variant's steps in its first stage
    lr: float = 3e-3
    ko_vocab: int = 8000
    eval_docs: int = 50
    evals: int = 4                # evaluation points along the continuation (plus step 0)
    seeds: int = 3
    replay: float = 0.05          # English replay share every variant runs at
    sweep_replays: tuple[float, ...] = (0.0, 0.2)
    sweep_variants: tuple[str, ...] = ("no-expansion", "fvt")
    seed: int = 1234

    def standin(self, korean_share: float) -> StandinSettings:
        return StandinSettings(self.shape, self.standin_steps, korean_share, self.lr, self.seed)


QUICK = dict(shape=ModelShape(batch=4, seq=64), standin_steps=40, ko_steps=6, eval_docs=10, evals=2, ko_vocab=2000,
             sweep_replays=(), sweep_variants=())


@dataclass
class Context:
    settings: Settings
    cache: Path
    standin_dir: Path
    base_dir: Path
    merged_dir: Path
    tokenizers: dict
    streams: dict
    ko_eval: list[str]
    en_eval: list[str]
    log: object = print


def prepared_model(ctx: Context, init: str | None, seed: int):
    """(model, tokenizer) at the start of the continuation."""
    from transformers import LlamaForCausalLM

    if init is None:
        return LlamaForCausalLM.from_pretrained(ctx.standin_dir), ctx.tokenizers["base"]
    merged = ctx.tokenizers["merged"]
    if init == "hf-default":
        model = LlamaForCausalLM.from_pretrained(ctx.standin_dir)
        torch.manual_seed(seed)  # mean_resizing samples the new rows from a normal fitted to the old ones
        model.resize_token_embeddings(len(merged), mean_resizing=True)
        return model, merged
    suffix = f"-seed{seed}" if init == "random" else ""
    out = ctx.cache / f"{ctx.standin_dir.name}-{ctx.merged_dir.name}-{init}{suffix}"
    if not (out / "config.json").is_file():
        resize(ResizeJob(model=ctx.standin_dir, tokenizer=ctx.merged_dir, output=out, section=ResizeSection(init=init, seed=seed),
                         base_tokenizer=LLAMA2_TOKENIZER, overwrite=True), progress=False)
    return LlamaForCausalLM.from_pretrained(out), merged


def run_one(ctx: Context, name: str, replay: float, seed: int, budget_flops: float) -> dict:
    """One variant, one replay share, one seed: the curve of evaluations over its steps."""
    settings, shape = ctx.settings, ctx.settings.shape
    init, stage1 = VARIANTS[name]
    model, tokenizer = prepared_model(ctx, init, seed)
    which = "base" if init is None else "merged"
    tokens_per_step = shape.batch * shape.seq
    per_token = flops_per_token(model)
    steps = max(2, round(budget_flops / (tokens_per_step * per_token)))
    eval_at = {max(1, round(k * steps / settings.evals)) for k in range(1, settings.evals + 1)}
    curve = [{"step": 0, **evaluate(model, tokenizer, ctx.ko_eval, ctx.en_eval)}]
    losses: list[float] = []
    streams = [ctx.streams[which]["ko"], ctx.streams[which]["en"]]
    batches = blended_batches(streams, [1.0 - replay, replay], shape, steps, seed)

    def on_step(step: int, loss: float, offset: int = 0) -> None:
        losses.append(loss)
        if step + offset in eval_at:
            curve.append({"step": step + offset, "loss": loss, **evaluate(model, tokenizer, ctx.ko_eval, ctx.en_eval)})

    torch.manual_seed(seed)
    stage1_steps = round(steps * settings.stage1_fraction) if stage1 else 0
    if stage1_steps:
        base_rows = len(ctx.tokenizers["base"])
        train(model, batches, stage1_steps, settings.lr, trainable=lambda n: "embed_tokens" in n or "lm_head" in n,
              keep_rows=base_rows if stage1 == "new-rows" else 0, on_step=on_step)
    train(model, batches, steps - stage1_steps, settings.lr, on_step=lambda s, loss: on_step(s, loss, stage1_steps))
    # Stage-1 steps are counted at full cost (their forward and backward still run through the body).
    return {"curve": curve, "steps": steps, "stage1_steps": stage1_steps, "vocab": model.config.vocab_size,
            "train_tokens": steps * tokens_per_step, "train_flops": steps * tokens_per_step * per_token,
            "final_loss": losses[-1]}


def build_context(settings: Settings, cache: Path, log=print) -> tuple[Context, dict]:
    cache.mkdir(parents=True, exist_ok=True)
    base_dir = base_tokenizer_dir(cache)
    merged_dir = merged_tokenizer_dir(cache, KO_TRAIN, settings.ko_vocab)
    tokenizers = {"base": hf_tokenizer(base_dir), "merged": hf_tokenizer(merged_dir)}
    ko_eval = lines(KO_HELDOUT, settings.eval_docs)
    en_eval = lines(EN_HELDOUT, settings.eval_docs)

    from transformers import LlamaForCausalLM

    standins = {}
    for label, share in (("standin", settings.standin_korean_share), ("no-korean", 0.0)):
        directory, record = pretrain_standin(cache, settings.standin(share), tokenizers["base"], log=log)
        model = LlamaForCausalLM.from_pretrained(directory)
        standins[label] = {**record, "korean_share": share, **evaluate(model, tokenizers["base"], ko_eval, en_eval)}
        log(f"  {label:>9}: ko {standins[label]['ko_bpc']:.3f} en {standins[label]['en_bpc']:.3f} bits/char")
    ko_train = [t for f in sorted(KO_TRAIN.glob("*.txt")) for t in lines(f)]
    en_train = lines(EN_SHAKESPEARE)
    streams = {which: {"ko": token_stream(tok, ko_train), "en": token_stream(tok, en_train)}
               for which, tok in tokenizers.items()}
    ctx = Context(settings, cache, Path(standins["standin"]["dir"]), base_dir, merged_dir, tokenizers, streams,
                  ko_eval, en_eval, log)
    return ctx, standins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ablation.json",
                        help="JSON report (the plot is written beside it as .png)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help=f"stand-ins, tokenizers and resized models, keyed by their settings (default {DEFAULT_CACHE})")
    parser.add_argument("--quick", action="store_true", help="a smoke run (~2 minutes): tiny step counts, main replay share only")
    parser.add_argument("--seeds", type=int, help=f"seeds per variant (default {Settings.seeds})")
    parser.add_argument("--ko-steps", type=int, help=f"no-expansion continuation steps = the FLOPs budget (default {Settings.ko_steps})")
    parser.add_argument("--standin-steps", type=int, help=f"stand-in pretraining steps (default {Settings.standin_steps})")
    parser.add_argument("--eval-docs", type=int, help=f"held-out documents per language (default {Settings.eval_docs})")
    args = parser.parse_args(argv)
    settings = Settings(**QUICK) if args.quick else Settings()
    for name in ("seeds", "ko_steps", "standin_steps", "eval_docs"):
        if getattr(args, name) is not None:
            settings = replace(settings, **{name: getattr(args, name)})
    if settings.seeds < 1 or settings.ko_steps < 2 or settings.standin_steps < 1 or settings.eval_docs < 1:
        parser.error("--seeds, --standin-steps and --eval-docs must be >= 1, --ko-steps >= 2")
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    started = time.time()
    ctx, standins = build_context(settings, args.cache_dir)

    from transformers import LlamaForCausalLM

    base_model = LlamaForCausalLM.from_pretrained(ctx.standin_dir)
    budget = settings.ko_steps * settings.shape.batch * settings.shape.seq * flops_per_token(base_model)
    plan = [(settings.replay, name) for name in VARIANTS]
    plan += [(r, name) for r in settings.sweep_replays for name in settings.sweep_variants]
    runs: dict[str, dict[str, dict]] = {}
    for number, (replay, name) in enumerate(plan, 1):
        seeds = {}
        for seed in range(settings.seed, settings.seed + settings.seeds):
            seeds[str(seed)] = result = run_one(ctx, name, replay, seed, budget)
            first, last = result["curve"][0], result["curve"][-1]
            print(f"[{number}/{len(plan)}] replay {replay:.0%} {name:>20} seed {seed}: ko {first['ko_bpc']:.3f} -> "
                  f"{last['ko_bpc']:.3f}, en {first['en_bpc']:.3f} -> {last['en_bpc']:.3f} bits/char "
                  f"({result['steps']} steps, {(time.time() - started) / 60:.1f} min)", flush=True)
        runs.setdefault(f"{replay:g}", {})[name] = {"replay": replay, "seeds": seeds}
    summary = summarize(runs)
    report = {"settings": asdict(settings), "budget_flops": budget, "base_tokenizer": str(LLAMA2_TOKENIZER),
              "merged_tokenizer": str(ctx.merged_dir), "vocab": {k: len(t) for k, t in ctx.tokenizers.items()},
              "standins": standins, "runs": runs, "summary": summary, "seconds": round(time.time() - started, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    plot(report, args.out.with_suffix(".png"))
    os.replace(tmp, args.out)
    print_table(report)
    print(f"\nwrote {args.out} and {args.out.with_suffix('.png')} in {report['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
