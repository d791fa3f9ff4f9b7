"""`kocpt demo`: every stage of the pipeline, in order, on the embedded default.

    corpus → Korean SentencePiece → merge into the base tokenizer → tiny base model → resize
    → convert to Megatron-Core → tokenize → CPT with TP=2 over 2 processes (pretrain/launch.sh)
    → export to Hugging Face → evaluation report

Each stage command gets `--config CONFIG` and the `--set` items for its own sections, so the config
and `kocpt demo --set section.key=value` reach every stage as they would when run by hand.

Each stage leaves a stamp (`OUTPUT/.stamps/NAME.json`) holding a digest of what it was run with:
its settings, the files it read and the stamps of the stages before it. A rerun skips every stage
whose stamp still matches, so a run killed mid-way continues with the stage it was in.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from kocpt.demo_stages import check_sections, demo_stages
from kocpt.stage_runner import DemoError
from stagekit.config import add_config_arguments
from stagekit.errors import BadInput
from stagekit.paths import DEFAULT_CONFIG, REPO
from tokenizer.config import mistral_base_model


def build_parser(prog: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog or "kocpt demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=REPO / "demo-output", help="where every stage writes (default: demo-output/)")
    add_config_arguments(parser)  # each stage gets --config and the --set items for its sections
    parser.set_defaults(config=str(DEFAULT_CONFIG))
    parser.add_argument("--base-tokenizer", type=Path,
                        help="Llama-2 tokenizer.model or a HF directory holding one (default: tokenizer.base of the "
                        "config; when null, Mistral-7B's tokenizer.model.v1 from mistral-common as a stand-in)")
    parser.add_argument("--base-model", type=Path, help="a HF Llama directory (default: a tiny model built from the config's model: section)")
    parser.add_argument("--force", action="store_true", help="rerun every stage, ignoring stamps")
    parser.add_argument("--until", metavar="STAGE", help="stop after this stage (e.g. merge, to look at the tokenizer first)")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    prog = prog or "kocpt demo"
    try:
        return run_demo(args, prog)
    except (DemoError, BadInput) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, DemoError) else 2


def run_demo(args: argparse.Namespace, prog: str) -> int:
    config = Path(args.config).resolve()  # the stages run in the repository root
    out = args.output.resolve()
    # Relative paths in the config and in --set are relative to the repository root (where the
    # stages run), the flags' to the shell's; --base-tokenizer is `--set tokenizer.base` for every stage.
    sets = list(args.overrides)
    if args.base_tokenizer:
        sets.append(f"tokenizer.base={json.dumps(str(args.base_tokenizer.resolve()))}")
    tokenizer = check_sections(config, sets, out)  # every section a stage reads, before the first runs
    base_tokenizer = (REPO / tokenizer.base).resolve() if tokenizer.base else mistral_base_model()
    if not base_tokenizer.exists():
        raise BadInput(f"{base_tokenizer}: no such base tokenizer")
    if tokenizer.base is None:
        print(f"{prog}: base tokenizer: Mistral-7B's tokenizer.model.v1 (mistral-common) standing in for "
              "Llama-2's; pass --base-tokenizer PATH/tokenizer.model (or set tokenizer.base) for the real one", flush=True)
    stages = demo_stages(out, config, sets, tokenizer, base_tokenizer, args.base_model)
    names = [stage.name for stage in stages]
    if args.until is not None:
        if args.until not in names:
            raise BadInput(f"--until {args.until}: not a stage (stages: {', '.join(names)})")
        stages = stages[: names.index(args.until) + 1]
    out.mkdir(parents=True, exist_ok=True)
    stamp_dir = out / ".stamps"
    stamp_dir.mkdir(exist_ok=True)
    stamps: dict[str, str] = {}
    started = time.time()
    for number, stage in enumerate(stages, 1):
        digest = stage.fingerprint(stamps)
        stamp = stamp_dir / f"{stage.name}.json"
        head = f"[{number}/{len(stages)}] {stage.name:<10}"
        if not args.force and stamp.is_file() and stage.output.exists() and json.loads(stamp.read_text())["digest"] == digest:
            print(f"{head} up to date ({stage.output.relative_to(out)})", flush=True)
            stamps[stage.name] = digest
            continue
        started_mark = stamp_dir / f"{stage.name}.started"
        previous = set_aside(stage.output, stamp_dir, ours=stamp.is_file() or started_mark.is_file())
        stamp.unlink(missing_ok=True)
        started_mark.touch()  # the output from here on is this demo's, whatever becomes of the run
        print(f"{head} ...", end="", flush=True)
        stage_started = time.time()
        try:
            stage.run()
        except BaseException as exc:
            if previous is not None and not os.path.lexists(stage.output):
                os.rename(previous, stage.output)  # nothing lost: the earlier output is back in place
            if isinstance(exc, DemoError):
                print(" failed", flush=True)
            raise
        if previous is not None:
            shutil.rmtree(previous) if previous.is_dir() and not previous.is_symlink() else previous.unlink()
        stamp.write_text(json.dumps({"digest": digest, "seconds": round(time.time() - stage_started, 1)}))
        started_mark.unlink()
        stamps[stage.name] = digest
        print(f" done in {time.time() - stage_started:.0f}s → {stage.output.relative_to(out)}", flush=True)
    print_summary(prog, out, time.time() - started)
    return 0


def set_aside(output: Path, stamp_dir: Path, ours: bool) -> Path | None:
    """Move an earlier output of a stage out of the way (deleted once the stage has succeeded).

    Only the demo's own outputs (a stamp or a started mark says so) are touched; anything else at
    that path belongs to the user and stops the demo.
    """
    if not os.path.lexists(output):
        return None
    if not ours:
        raise BadInput(f"{output}: exists and was not written by kocpt demo; choose another --output or move it away")
    aside = stamp_dir / f"previous-{output.name}"
    if os.path.lexists(aside):
        shutil.rmtree(aside) if aside.is_dir() and not aside.is_symlink() else aside.unlink()
    os.rename(output, aside)
    return aside


def print_summary(prog: str, out: Path, seconds: float) -> None:
    print(f"\n{prog}: finished in {seconds / 60:.1f} min. Outputs in {out}:")
    stats_path = out / "corpus" / "stats.json"
    if stats_path.is_file():
        stats = json.loads(stats_path.read_text())
        print(f"  corpus/      {stats['input_records']:,} documents in, {stats['kept']:,} kept")
    report_path = out / "tokenizer" / "report.json"
    if report_path.is_file():
        report = json.loads(report_path.read_text())
        print(f"  tokenizer/   {summarize_tokenizer(report)}")
    metrics_path = out / "pretrain" / "metrics.jsonl"
    if metrics_path.is_file():
        records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
        losses = [r["loss"] for r in records if "loss" in r]
        if losses:
            print(f"  pretrain/    {len(losses)} steps, training loss {losses[0]:.3f} → {losses[-1]:.3f}")
    for name in ("final", "eval"):
        if (out / name).is_dir() and name == "final":
            print("  final/       Hugging Face model + tokenizer, ready for SFT (evaluation/SFT.md)")
    eval_md = out / "eval" / "eval.md"
    if eval_md.is_file():
        print(f"  eval/        {eval_md} (eval.json, plots)")
        print("\n" + eval_md.read_text().strip())


def summarize_tokenizer(report: dict) -> str:
    from tokenizer.report_schema import TokenizerReport  # either family's report.json, any schema version

    read = TokenizerReport.from_dict(report)
    text = f"{read.vocab.base_size:,} → {read.vocab.size:,} {read.vocab.unit}" if read.vocab else "report.json"
    for name, figures in read.korean.items():
        before, after = figures["base"].tokens_per_char, figures["merged"].tokens_per_char
        text += f"; Korean tokens/char {before:.2f} → {after:.2f} on {Path(name).name}"
    return text


if __name__ == "__main__":
    from stagekit.entry import run_main  # Ctrl-C and bad input: one line

    sys.exit(run_main(main))
