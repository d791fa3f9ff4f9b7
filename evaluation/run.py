"""`kocpt eval`: bits per character, tokenizer figures, lm-eval tasks and a generation sample.

    kocpt eval --model demo-output/hf --output demo-output/eval \\
        --baseline base=demo-output/base-model,../shared/data/llama2-tokenizer/tokenizer.model \\
        --baseline resized=demo-output/resized \\
        --tensorboard demo-output/pretrain/tensorboard --tokenizer-report demo-output/tokenizer/report.json

Writes OUTPUT/eval.json (every figure), OUTPUT/eval.md (the table), and PNG plots: bits_per_char.png,
training.png (with --tensorboard), tokens_per_char.png (with --tokenizer-report).
A model is a Hugging Face causal-LM directory; its tokenizer is --tokenizer (a directory, or a
SentencePiece tokenizer.model turned into a Hugging Face tokenizer on the fly) or else the model
directory itself. Baselines: `[LABEL=]MODEL_DIR[,TOKENIZER]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from evaluation import BadInput
from evaluation.config import EvalConfig, load_eval_config
from stagekit.config import add_config_arguments
from stagekit.outputs import resolved
from tokenizer.model_match import check_rows, check_same_pieces, has_tokenizer


@dataclass
class ModelSpec:
    label: str
    model: str
    tokenizer: str | None = None


def parse_baseline(text: str) -> ModelSpec:
    label, sep, rest = text.partition("=")
    if not sep:
        label, rest = "", text
    model, _, tokenizer = rest.partition(",")
    if not model:
        raise BadInput(f"--baseline {text!r}: expected [LABEL=]MODEL_DIR[,TOKENIZER]")
    return ModelSpec(label or Path(model).name, model, tokenizer or None)


def parse_task_data(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise BadInput(f"--task-data {item!r}: expected TASK=FILE")
        out[name] = path
    return out


# --------------------------------------------------------------------------- loading


def load_tokenizer(path: str | Path):
    """A Hugging Face tokenizer from a directory, or from a SentencePiece .model via the project's exporter."""
    from transformers import AutoTokenizer

    path = Path(path)
    if path.is_dir():
        if not (path / "tokenizer_config.json").is_file():
            # transformers 5 loads such a directory as a generic tokenizer that disagrees with SentencePiece
            raise BadInput(f"{path}: no tokenizer_config.json (not a Hugging Face tokenizer directory)")
        try:
            return AutoTokenizer.from_pretrained(str(path))
        except (OSError, ValueError) as exc:
            raise BadInput(f"{path}: cannot load tokenizer ({str(exc).splitlines()[0]})") from None
    if path.is_file():
        from tokenizer.spm_hf_export import write_hf_files
        from tokenizer.spm_model import load_model

        try:
            proto = load_model(path)
        except BadInput:  # the tokenizer stage's own one-line message (the same class)
            raise
        except Exception as exc:  # a protobuf parse error names no file
            raise BadInput(f"{path}: not a SentencePiece model ({type(exc).__name__})") from None
        with tempfile.TemporaryDirectory(prefix="kocpt-eval-tok-") as tmp:
            write_hf_files(proto, Path(tmp))
            return AutoTokenizer.from_pretrained(tmp)
    raise BadInput(f"{path}: tokenizer not found")


def load_model(path: str | Path):
    import torch
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not (path / "config.json").is_file():
        raise BadInput(f"{path}: not a Hugging Face model directory (no config.json)")
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    except (OSError, ValueError, RuntimeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "mismatch" in message:
            raise BadInput(f"{path}: cannot load model: its weights do not match its config.json (tensor shapes differ)") from None
        raise BadInput(f"{path}: cannot load model ({message})") from None
    return model.eval()


def vocab_figures(model, tokenizer, spec: ModelSpec) -> dict:
    rows = model.get_input_embeddings().weight.shape[0]
    size = len(tokenizer)
    suppressed = getattr(getattr(model, "generation_config", None), "suppress_tokens", None)
    check_rows(rows, size, model=spec.model, tokenizer=spec.tokenizer or spec.model, suppressed=suppressed)
    return {"tokenizer": size, "model_rows": rows, "padding_rows": rows - size}


# --------------------------------------------------------------------------- one model


def generate_samples(model, tokenizer, prompts: list[str], max_new_tokens: int, temperature: float = 0.0,
                     top_k: int = 50, seed: int = 0) -> list[dict]:
    """Greedy completions (temperature 0), or sampled ones from the top_k tokens, seeded per prompt."""
    import torch

    decoding = {"do_sample": False} if temperature == 0 else {"do_sample": True, "temperature": temperature, "top_k": top_k}
    samples = []
    for prompt in prompts:
        inputs = tokenizer(prompt, return_tensors="pt")
        torch.manual_seed(seed)  # the same samples for the same model, whatever ran before
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, **decoding,
                                    pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        new_tokens = output[0, inputs["input_ids"].shape[1]:]
        samples.append({"prompt": prompt, "completion": tokenizer.decode(new_tokens, skip_special_tokens=True),
                        "new_tokens": int(new_tokens.numel())})
    return samples


def evaluate_model(spec: ModelSpec, config: EvalConfig, texts: dict[str, dict[str, list[str]]],
                   progress: bool = True) -> dict:
    from evaluation.bpc import score_texts
    from evaluation.lm_eval_tasks import run_tasks

    started = time.time()
    if spec.tokenizer and has_tokenizer(spec.model) and resolved(spec.tokenizer) != resolved(spec.model):
        check_same_pieces(spec.tokenizer, spec.model, model=spec.model)  # --tokenizer of another base
    model = load_model(spec.model)
    tokenizer_path = spec.tokenizer or spec.model
    tokenizer = load_tokenizer(tokenizer_path)
    entry = {"label": spec.label, "model": str(spec.model), "tokenizer": str(tokenizer_path),
             "parameters": sum(p.numel() for p in model.parameters()), "vocab": vocab_figures(model, tokenizer, spec),
             "bpc": {}}
    for kind, files in texts.items():
        entry["bpc"][kind] = {}
        for name, documents in files.items():
            result = score_texts(model, tokenizer, documents, name=f"{spec.label} {name}", context=config.context,
                                 stride=config.stride, max_batch_tokens=config.max_batch_tokens, progress=progress)
            entry["bpc"][kind][name] = result.to_dict()
            print(f"  {spec.label}: {kind} {name}: {result.bits_per_char:.4f} bits/char, "
                  f"{result.bits_per_byte:.4f} bits/byte, {result.tokens_per_char:.3f} tokens/char", flush=True)
    if config.tasks:
        tasks = run_tasks(model, tokenizer, config.tasks, task_data=config.task_data, limit=config.limit,
                          batch_size=config.batch_size, max_length=config.context, progress=progress)
        entry["tasks"] = tasks["results"]
        entry["task_chance"] = tasks["chance"]
        entry["tasks_skipped"] = tasks["skipped"]
        entry["task_samples"] = tasks["n_samples"]
        entry["task_data"] = tasks["data_files"]
        for task, why in tasks["skipped"].items():
            print(f"  {spec.label}: task {task} skipped: {why}", flush=True)
        for task, metrics in tasks["results"].items():
            chance = tasks["chance"].get(task, {})
            shown = ", ".join(f"{k} {v:.4f}" + (f" (chance {chance[k]:.4f})" if k in chance else "")
                              for k, v in metrics.items() if v is not None and not k.endswith("stderr"))
            print(f"  {spec.label}: {task}: {shown}", flush=True)
    if config.prompts and config.max_new_tokens:
        entry["generation"] = generate_samples(model, tokenizer, config.prompts, config.max_new_tokens,
                                               config.temperature, config.top_k, config.sample_seed)
    entry["seconds"] = round(time.time() - started, 2)
    del model
    gc.collect()
    return entry


# --------------------------------------------------------------------------- the command


def read_texts(config: EvalConfig, notes: list[str]) -> dict[str, dict[str, list[str]]]:
    from evaluation.bpc import read_documents

    texts: dict[str, dict[str, list[str]]] = {}
    for kind, files in (("korean", config.korean), ("english", config.english)):
        texts[kind] = {}
        for file in files:
            if config.skip_missing and not Path(file).exists():
                notes.append(f"skipped missing {kind} text {file}")
                continue
            name = Path(file).name
            if name in texts[kind]:
                raise BadInput(f"two {kind} texts share the name {name}; rename one")
            texts[kind][name] = read_documents(file, config.max_documents or None)
    return texts


def check_task_data(config: EvalConfig, notes: list[str]) -> None:
    """Fail (or, with skip_missing, drop the task) before any model is loaded, not after the first one."""
    from evaluation.lm_eval_tasks import builtin_task_names, load_task_config, local_task_names

    keep, others = [], []
    for task in config.tasks:
        if task in local_task_names():
            try:
                load_task_config(task, config.task_data.get(task))
            except BadInput as exc:
                if not config.skip_missing:
                    raise
                notes.append(f"skipped task {task}: {exc}")
                config.task_data.pop(task, None)
                continue
        else:
            others.append(task)
        keep.append(task)
    if others:
        print(f"indexing lm-eval's built-in tasks for {', '.join(others)} (takes about half a minute)", flush=True)
        unknown = sorted(set(others) - set(builtin_task_names()))
        if unknown:
            raise BadInput(f"unknown lm-eval task(s) {unknown} (ours: {', '.join(local_task_names())})")
    config.tasks = keep


def task_columns(models: list[dict]) -> list[tuple[str, str]]:
    from evaluation.lm_eval_tasks import headline

    columns: list[tuple[str, str]] = []
    for model in models:
        for task, metrics in (model.get("tasks") or {}).items():
            for metric in headline(task, metrics):
                if (task, metric) not in columns:
                    columns.append((task, metric))
    return columns


def run(args: argparse.Namespace) -> dict:
    from evaluation import report
    from evaluation.lm_eval_tasks import go_offline, split_task_names

    go_offline()
    tasks = None if args.tasks is None else split_task_names(args.tasks)  # lm-eval's comma form too
    if tasks == ["none"]:
        tasks = []
    config = load_eval_config(args.config, args.overrides, flags={
        "korean": args.korean, "english": args.english, "max_documents": args.max_documents,
        "context": args.context, "stride": args.stride, "limit": args.limit, "batch_size": args.batch_size,
        "prompts": args.prompt, "max_new_tokens": args.max_new_tokens, "tasks": tasks,
        "skip_missing": args.skip_missing or None,
    })
    config.task_data.update(parse_task_data(args.task_data))

    specs = [ModelSpec(args.label, args.model, args.tokenizer)] + [parse_baseline(b) for b in args.baseline]
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise BadInput(f"model labels must differ (got {labels}); name baselines as LABEL=DIR")
    for spec in specs:
        if not Path(spec.model).is_dir():
            raise BadInput(f"{spec.model}: model directory not found")

    notes: list[str] = []
    texts = read_texts(config, notes)
    check_task_data(config, notes)
    training = report.training_curves(args.tensorboard, config.loss_tags, config.bpc_tags) if args.tensorboard else None
    tokenizer = report.tokenizer_figures(args.tokenizer_report) if args.tokenizer_report else None

    output = Path(args.output)
    models = []
    for i, spec in enumerate(specs, 1):
        print(f"[{i}/{len(specs)}] evaluating {spec.label}: {spec.model}", flush=True)
        models.append(evaluate_model(spec, config, texts, progress=not args.no_progress))
        for task, why in (models[-1].get("tasks_skipped") or {}).items():
            note = f"task {task} skipped: {why}"
            if note not in notes:
                notes.append(note)

    result = {
        "settings": {**dataclasses.asdict(config)},
        "texts": {kind: {name: {"documents": len(docs), "characters": sum(map(len, docs))} for name, docs in files.items()}
                  for kind, files in texts.items()},
        "models": models,
        "task_columns": task_columns(models),
        "tokenizer": tokenizer,
        "training": training,
        "notes": notes,
        "files": {"json": "eval.json", "markdown": "eval.md", "plots": []},
    }
    write_outputs(output, result)
    return result


def write_outputs(output: Path, result: dict) -> None:
    """Everything goes to a hidden scratch folder first and moves in at the end, eval.json last, so a
    failed run leaves the previous report untouched and never a partial one."""
    import shutil

    from evaluation import report

    output.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=output, prefix=".partial-"))
    try:
        plots = result["files"]["plots"]
        report.plot_bits_per_char(scratch / "bits_per_char.png", result)
        plots.append("bits_per_char.png")
        if result["training"]:
            report.plot_training(scratch / "training.png", result["training"])
            plots.append("training.png")
        if result["tokenizer"]:
            report.plot_tokens_per_char(scratch / "tokens_per_char.png", result["tokenizer"])
            plots.append("tokens_per_char.png")
        clean = report.finite_or_none(result)
        result.clear()
        result.update(clean)
        report.write_markdown(scratch / "eval.md", result)
        report.write_json(scratch / "eval.json", result)
        for name in ("training.png", "tokens_per_char.png"):  # a previous run's plots this run does not make
            if name not in plots:
                (output / name).unlink(missing_ok=True)
        for name in [*plots, "eval.md", "eval.json"]:
            (scratch / name).replace(output / name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate Hugging Face causal LMs with tokenizer-independent figures: bits per character and "
                    "per byte on Korean and English text, zero-shot Korean lm-eval tasks on local files, the "
                    "tokenizer report, training curves and a generation sample.",
        epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--model", required=True, metavar="HF_DIR", help="the model to evaluate (e.g. the export)")
    parser.add_argument("--tokenizer", metavar="DIR|FILE", help="its tokenizer (default: the model directory)")
    parser.add_argument("--label", default="model", help="the model's name in the report (default: %(default)s)")
    parser.add_argument("--output", required=True, metavar="DIR", help="where eval.json, eval.md and the plots go")
    parser.add_argument("--baseline", action="append", default=[], metavar="[LABEL=]HF_DIR[,TOKENIZER]",
                        help="another model for the same table (repeatable), e.g. base=llama2-hf,llama2/tokenizer.model")
    add_config_arguments(parser, ("eval",))  # --config FILE (its eval: section gives the defaults), --set eval.KEY=VALUE
    parser.add_argument("--tensorboard", metavar="DIR", help="TensorBoard logs of the pretraining run (loss, val_bpc)")
    parser.add_argument("--tokenizer-report", metavar="FILE", help="report.json of `kocpt tokenizer report`")
    parser.add_argument("--korean", nargs="+", metavar="FILE", help="held-out Korean text(s): .txt (a document a line), "
                        ".jsonl (\"text\") or corpus shards (default: ../shared/data/ko-heldout)")
    parser.add_argument("--english", nargs="*", metavar="FILE", help="English text(s) (default: ../shared/data/en)")
    parser.add_argument("--max-documents", type=int, metavar="N", help="documents per text file, 0 = all (default 500)")
    parser.add_argument("--context", type=int, metavar="N", help="tokens per scoring window (default: the model's maximum)")
    parser.add_argument("--stride", type=int, metavar="N", help="window step (default: context // 2)")
    parser.add_argument("--tasks", nargs="*", action="extend", metavar="TASK", help="lm-eval tasks, space- or "
                        "comma-separated as lm-eval takes them, or repeated (default: korsts kornli nsmc; 'none' to skip)")
    parser.add_argument("--task-data", action="append", default=[], metavar="TASK=FILE",
                        help="point a task at your own copy of its data (repeatable)")
    parser.add_argument("--limit", type=int, metavar="N", help="documents per lm-eval task (default: all)")
    parser.add_argument("--batch-size", type=int, metavar="N", help="lm-eval batch size (default 8)")
    parser.add_argument("--prompt", action="append", metavar="TEXT", help="generation prompt (repeatable)")
    parser.add_argument("--max-new-tokens", type=int, metavar="N", help="tokens generated per prompt (default 40; 0 = none)")
    parser.add_argument("--skip-missing", action="store_true", help="skip text files and task data that do not exist")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (ours, lm-eval's, datasets')")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        result = run(args)
    except BadInput as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    output = Path(args.output)
    print(f"wrote {output / 'eval.json'}, {output / 'eval.md'}" +
          "".join(f", {output / p}" for p in result["files"]["plots"]))
    for model in result["models"]:
        ko = next(iter((model["bpc"].get("korean") or {}).values()), None)
        en = next(iter((model["bpc"].get("english") or {}).values()), None)
        print(f"  {model['label']}: Korean {ko['bits_per_char']:.4f} bits/char" if ko else f"  {model['label']}:",
              f"| English {en['bits_per_char']:.4f} bits/char" if en else "")
    return 0


if __name__ == "__main__":
    from stagekit.entry import run_main  # Ctrl-C and bad input: one line

    sys.exit(run_main(main))
