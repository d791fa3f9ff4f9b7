"""`kocpt demo`: every stage of the pipeline, in order, on the embedded default.

    corpus → Korean SentencePiece → merge into the base tokenizer → tiny base model → resize
    → convert to Megatron-Core → tokenize → CPT with TP=2 over 2 processes (pretrain/launch.sh)
    → export to Hugging Face → evaluation report

Each stage leaves a stamp (`OUTPUT/.stamps/NAME.json`) holding a digest of what it was run with:
its settings, the files it read and the stamps of the stages before it. A rerun skips every stage
whose stamp still matches, so a run killed mid-way continues with the stage it was in.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "demo.yaml"
DEMO_CORPUS = REPO / "tests" / "data" / "demo_corpus"
SHARED_DATA = REPO.parent / "shared" / "data"


class DemoError(RuntimeError):
    """A stage failed; the message names it and where its log is."""


def stand_in_base_tokenizer() -> Path:
    """Mistral-7B's SentencePiece BPE (32,000 pieces, byte fallback, identity normalizer: the
    design of Llama-2's), shipped by the Apache-2.0 `mistral-common` package: a real Llama-family
    tokenizer that installs from PyPI, standing in for Llama-2's, which cannot be downloaded here."""
    import mistral_common

    path = Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"
    if not path.is_file():
        raise DemoError(f"{path}: mistral-common no longer ships tokenizer.model.v1; pass --base-tokenizer")
    return path


def file_digest(path: Path) -> str:
    """Content digest of a file or of every file under a directory (names included)."""
    digest = hashlib.sha256()
    paths = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for item in paths:
        digest.update(str(item.relative_to(path) if path.is_dir() else item.name).encode())
        digest.update(hashlib.sha256(item.read_bytes()).digest())
    return digest.hexdigest()


@dataclass
class Stage:
    name: str
    output: Path
    run: Callable[[], None]
    settings: dict = field(default_factory=dict)  # what the stage was configured with
    reads: list[Path] = field(default_factory=list)  # files from outside the demo it depends on
    after: list[str] = field(default_factory=list)  # stages whose output it reads

    def fingerprint(self, stamps: dict[str, str]) -> str:
        payload = {
            "settings": self.settings,
            "reads": {str(path): file_digest(path) for path in self.reads},
            "after": {name: stamps[name] for name in self.after},
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def run_command(name: str, command: list[str], log_dir: Path, env: dict | None = None) -> None:
    """A stage's command with its output in LOG_DIR/NAME.log; a failure names the log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        raise DemoError(f"stage {name} failed (exit {result.returncode}); log: {log_path}\n    " + "\n    ".join(tail))


def build_parser(prog: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog or "kocpt demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=REPO / "demo-output", help="where every stage writes (default: demo-output/)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="run config (default: configs/demo.yaml)")
    parser.add_argument("--base-tokenizer", type=Path,
                        help="Llama-2 tokenizer.model or a HF directory holding one "
                        "(default: Mistral-7B's tokenizer.model.v1 from mistral-common as a stand-in)")
    parser.add_argument("--base-model", type=Path, help="a HF Llama directory (default: a tiny model built from the config's model: section)")
    parser.add_argument("--force", action="store_true", help="rerun every stage, ignoring stamps")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    prog = prog or "kocpt demo"
    try:
        return run_demo(args, prog)
    except DemoError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1


def run_demo(args: argparse.Namespace, prog: str) -> int:
    from kocpt.demo_stages import demo_stages

    if not args.config.is_file():
        raise DemoError(f"{args.config}: no such config file")
    config = yaml.safe_load(args.config.read_text())
    out = args.output.resolve()
    out.mkdir(parents=True, exist_ok=True)
    base_tokenizer = (args.base_tokenizer or stand_in_base_tokenizer()).resolve()
    if not base_tokenizer.exists():
        raise DemoError(f"{base_tokenizer}: no such base tokenizer")
    if args.base_tokenizer is None:
        print(f"{prog}: base tokenizer: Mistral-7B's tokenizer.model.v1 (mistral-common) standing in for "
              "Llama-2's; pass --base-tokenizer PATH/tokenizer.model for the real one", flush=True)
    stages = demo_stages(out, args.config.resolve(), config, base_tokenizer, args.base_model)
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
        stamp.unlink(missing_ok=True)
        if stage.output.exists():  # left by an interrupted or outdated run: redo it from scratch
            shutil.rmtree(stage.output) if stage.output.is_dir() else stage.output.unlink()
        print(f"{head} ...", end="", flush=True)
        stage_started = time.time()
        try:
            stage.run()
        except DemoError:
            print(" failed", flush=True)
            raise
        stamp.write_text(json.dumps({"digest": digest, "seconds": round(time.time() - stage_started, 1)}))
        stamps[stage.name] = digest
        print(f" done in {time.time() - stage_started:.0f}s → {stage.output.relative_to(out)}", flush=True)
    print_summary(prog, out, time.time() - started)
    return 0


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
            print(f"  final/       Hugging Face model + tokenizer, ready for SFT (evaluation/SFT.md)")
    eval_md = out / "eval" / "eval.md"
    if eval_md.is_file():
        print(f"  eval/        {eval_md} (eval.json, plots)")
        print("\n" + eval_md.read_text().strip())


def summarize_tokenizer(report: dict) -> str:
    sizes = report["vocab"]
    text = f"{sizes['base_pieces']:,} → {sizes['merged_pieces']:,} pieces"
    for name, figures in report.get("korean", {}).items():
        before, after = figures["base"]["tokens_per_char"], figures["merged"]["tokens_per_char"]
        text += f"; Korean tokens/char {before:.2f} → {after:.2f} on {Path(name).name}"
    return text
