"""`kocpt SUBCOMMAND ...`: forwards the remaining arguments to the stage's own `main(argv)`.

Each stage owns its argument parser (so `python -m pipelines.corpus --help` and
`kocpt corpus --help` print the same thing); this file only maps names to entry points and
imports a stage lazily, so `kocpt --help` stays fast and one broken stage cannot break the others.
Bad input is one type for every stage (`stagekit.errors.BadInput`), printed here as one line; Ctrl-C is
`PROG: interrupted` and exit 130 after the stage's cleanup (stagekit.entry.run_main, which the
`python -m` forms use too).
"""

from __future__ import annotations

import importlib
import sys

from stagekit.entry import INTERRUPTED, run_main

# name -> (module, help). Nested groups ("tokenizer train") are a dict of the same.
COMMANDS: dict[str, tuple[str, str] | dict[str, tuple[str, str]]] = {
    "corpus": ("pipelines.corpus", "clean, deduplicate and shard raw Korean text (Apache Beam)"),
    "tokenizer": {
        "train": ("tokenizer.train", "train Korean SentencePiece BPE pieces on corpus shards"),
        "merge": ("tokenizer.merge", "merge Korean pieces into the Llama-2 tokenizer"),
        "report": ("tokenizer.report", "compare a merged tokenizer with its base"),
        "check": ("tokenizer.check", "validate any merged tokenizer: id agreement, unreachable/score-0 pieces"),
    },
    "checkpoints": {
        "resize": ("checkpoints.resize", "grow a HF Llama's vocabulary, initializing new rows"),
        "convert": ("checkpoints.convert", "convert between Hugging Face and Megatron-Core"),
    },
    "tokenize": ("pipelines.tokenize_corpus", "corpus shards -> Megatron indexed datasets (Beam)"),
    "pretrain": ("pretrain.train", "continued pretraining with Megatron-Core (run by torchrun)"),
    "plan": ("pretrain.plan", "memory and throughput plan for a pretraining config"),
    "eval": ("evaluation.run", "bits per character, tokenizer figures and lm-eval tasks"),
    "export": {
        "gguf": ("serving.gguf_export", "HF model -> GGUF with llama.cpp's own converter, checked in llama.cpp"),
    },
    "demo": ("kocpt.demo", "run every stage on the embedded demo corpus and tiny model"),
    "compare": ("kocpt.compare", "should I expand? arms trained at equal training FLOPs, scored with standard errors"),
}


def _usage(table: dict, prefix: str) -> str:
    width = max(len(name) for name in table)
    lines = [f"usage: {prefix} COMMAND [ARGS...]", "", "commands:"]
    for name, entry in table.items():
        if isinstance(entry, dict):
            lines.append(f"  {name:<{width}}  {', '.join(entry)}  ({prefix} {name} --help)")
        else:
            lines.append(f"  {name:<{width}}  {entry[1]}")
    lines.append("")
    example = next(name for name, entry in table.items() if not isinstance(entry, dict))  # a command of this table
    lines.append(f"Every command takes --help. Example: {prefix} {example} --help")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    try:
        return _dispatch(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:  # before a stage started (its own are handled by run_main)
        print("kocpt: interrupted", file=sys.stderr)
        return INTERRUPTED


def _dispatch(argv: list[str]) -> int:
    table: dict = COMMANDS
    prefix = "kocpt"
    while True:
        if not argv or argv[0] in ("-h", "--help"):
            print(_usage(table, prefix))
            return 0 if argv else 2
        name = argv.pop(0)
        if name not in table:
            print(f"{prefix}: error: unknown command {name!r}\n\n{_usage(table, prefix)}", file=sys.stderr)
            return 2
        entry = table[name]
        prefix = f"{prefix} {name}"
        if isinstance(entry, dict):
            table = entry
            continue
        module_name, _ = entry
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                print(f"{prefix}: error: this stage is not installed ({module_name})", file=sys.stderr)
                return 2
            raise
        return run_main(module.main, argv, prog=prefix)  # BadInput and Ctrl-C: one line (stagekit/entry.py)


if __name__ == "__main__":
    sys.exit(main())
