"""`kocpt compare`: should I expand? Two or more arms trained at equal training FLOPs, scored along the way.

    kocpt demo --until merge                       # the demo's corpus/ and merged tokenizer/ (or your own)
    kocpt compare --config configs/demo.yaml --output compare-output

From one run config (its `compare:` section, kocpt/compare_config.py) every arm goes through the
project's own path: resize (expanded arms) -> convert --to megatron -> tokenize the training corpus with
the arm's tokenizer -> pretrain/launch.sh (processes on CPU, srun inside a SLURM allocation) -> at each
evaluation point convert --to hf and score. The budget (the reference arm's tokens, or FLOPs) becomes each
arm's steps by pretrain/flops.py's FLOPs per token of that arm's shape: a bigger LM head costs more per
token, so an expanded arm takes fewer steps. Every arm is scored at the same FLOPs (step 0, then points each
doubling the one before) on the same whole held-out documents, with standard errors and paired gaps.

Resumable: a rerun with the same arguments skips finished arms and points and resumes training from an
arm's latest checkpoint; an arm whose settings changed is refused unless --overwrite (which retrains it).
Its inputs are never written; the report is kocpt/compare_report.py's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kocpt.compare_arm import Arm, ArmShape, arm_settings
from kocpt.compare_config import CompareSection
from kocpt.stage_runner import DemoError, file_digest
from stagekit.config import add_config_arguments, check_run_config, load_section, read_section
from stagekit.errors import BadInput
from stagekit.outputs import new_staging_dir, publish_directory, read_marker, refuse_overlap, write_file_atomic, write_marker
from stagekit.paths import DEFAULT_CONFIG, REPO

STAGE = "compare"
SETTINGS = "arm-settings.json"
SCORING = threading.Lock()


def build_parser(prog: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog or "kocpt compare", description=(
        "Should I expand? Trains the arms of the config's compare: section (the unexpanded base, the expanded "
        "model, ...) at equal training FLOPs through the project's own stages, scores them along the way on whole "
        "held-out documents with standard errors, and writes compare.md, compare.json and plots ending in one "
        "verdict line. Rerun with the same arguments to resume."))
    parser.add_argument("--output", type=Path, required=True, help="where the arms and the report go (rerun to resume)")
    add_config_arguments(parser, reads="compare (and every section its stages read)")
    parser.set_defaults(config=str(DEFAULT_CONFIG))
    parser.add_argument("--overwrite", action="store_true",
                        help="retrain the arms whose settings changed since the output was written (else refused)")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    prog = prog or "kocpt compare"
    try:
        return run_compare(args, prog)
    except DemoError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1


def repo_path(text: str) -> Path:
    """Config paths are relative to the repository root, where the stages run (as for kocpt demo)."""
    return (REPO / text).resolve()


def existing(path: Path, what: str) -> Path:
    if not path.exists():
        raise BadInput(f"compare.{what}: {path} does not exist")
    return path


def run_compare(args: argparse.Namespace, prog: str) -> int:
    from evaluation.config import load_eval_config
    from tokenizer.config import TokenizerConfig, mistral_base_model

    config = Path(args.config).resolve()
    sets = list(args.overrides)
    check_run_config(config, sets)  # every section typed, before anything runs
    section = load_section(CompareSection, "compare", config, sets)
    evaluation = load_eval_config(config, sets)
    corpus = existing(repo_path(section.corpus), "corpus")
    tokenizer = load_section(TokenizerConfig, "tokenizer", config, sets)
    base_text = section.base_tokenizer or tokenizer.base
    base_tokenizer = existing(repo_path(base_text), "base_tokenizer") if base_text else mistral_base_model()
    base_model = existing(repo_path(section.base_model), "base_model") if section.base_model else None
    for index, arm in enumerate(section.arms):
        if arm.tokenizer:
            existing(repo_path(arm.tokenizer), f"arms.{index}.tokenizer")
    files = {language: [repo_path(name) for name in names[:1]]
             for language, names in (("korean", evaluation.korean), ("english", evaluation.english))}
    if not files["korean"]:
        raise BadInput("eval.korean: no held-out Korean file to score the arms on")
    for language, paths in files.items():
        for path in paths:
            existing(path, f"eval.{language} file")

    out = args.output.resolve()
    refuse_overlap(out, {"--config": config, "compare.corpus": corpus, "compare.base_tokenizer": base_tokenizer,
                         "compare.base_model": base_model, "arms' tokenizers": [repo_path(a.tokenizer) for a in section.arms
                                                                               if a.tokenizer],
                         "eval files": [path for paths in files.values() for path in paths]})
    open_output(out)
    say = lambda text: print(f"{prog}: {text}", flush=True)  # noqa: E731
    if not base_text:
        say("base tokenizer: Mistral-7B's tokenizer.model.v1 (mistral-common) standing in for Llama-2's "
            "(set tokenizer.base or compare.base_tokenizer for the real one)")
    base_tokenizer = tokenizer_directory(base_tokenizer, out / "base-tokenizer")
    if base_model is None:
        base_model = tiny_base_model(out / "base-model", config, sets, base_tokenizer, say)

    share = cpu_share(section)
    arms = [Arm(arm, out / "arms" / arm.name, config, sets, base_model, base_tokenizer, corpus, section.beam_args,
                lambda text, name=arm.name: say(f"[{name}] {text}"), share) for arm in section.arms]
    common = {"compare": {key: value for key, value in read_section("compare", config, sets).items() if key != "arms"},
              "sections": {name: read_section(name, config, sets) for name in ("pretrain", "model", "checkpoints", "tokenize")},
              "eval": {language: [file_digest(path) for path in paths] for language, paths in files.items()},
              "base": {"model": file_digest(base_model / "config.json"), "tokenizer": file_digest(base_tokenizer),
                       "corpus": file_digest(corpus / "manifest.json") if (corpus / "manifest.json").is_file() else str(corpus)}}
    started = time.time()
    for arm in arms:
        claim_arm(arm, common, sets, args.overwrite)
    each_arm(section, Arm.prepare, arms)

    shapes = {arm.arm.name: arm.shape() for arm in arms}
    reference = section.reference_arm.name
    budget, plan = equal_flops_plan(section, shapes, reference)
    for arm in arms:
        shape = shapes[arm.arm.name]
        arm.say(f"{shape.flops_per_token / 1e6:,.2f} MFLOP/token, {shape.tokens_per_step:,} tokens/step: "
                f"steps {', '.join(map(str, plan[arm.arm.name]))} for {budget:.3e} training FLOPs")

    held_out = held_out_documents(arms, files, section, base_model)
    for item in held_out:
        say(f"held-out {item.language}: {len(item.documents)} whole documents of {item.file} "
            f"({item.too_long} longer than the context left out)")
    scored = each_arm(section, lambda arm: score_points(arm, plan[arm.arm.name], held_out, section), arms)
    scores = {arm.arm.name: result for arm, result in zip(arms, scored)}

    from kocpt.compare_report import build_report, write_report

    report = build_report(section, reference, budget, shapes, plan, scores, [item.summary() for item in held_out],
                          start_flops={arm.arm.name: arm.start_flops() for arm in arms})
    write_report(out, report)
    say(f"finished in {(time.time() - started) / 60:.1f} min; report: {out / 'compare.md'}")
    print(report["verdict"], flush=True)
    return 0


def cpu_share(section: CompareSection) -> int | None:
    """The CPUs each arm may use when arms run at once (None: one arm at a time, every CPU its own)."""
    concurrent = min(section.concurrent_arms, len(section.arms))
    return max(1, len(os.sched_getaffinity(0)) // concurrent) if concurrent > 1 else None


def each_arm(section: CompareSection, function, arms: list[Arm]) -> list:
    """function(arm) for every arm, compare.concurrent_arms at a time (threads: each waits on its commands)."""
    if section.concurrent_arms == 1:
        return [function(arm) for arm in arms]
    with ThreadPoolExecutor(max_workers=section.concurrent_arms) as pool:
        return list(pool.map(function, arms))


def open_output(out: Path) -> None:
    """The output is this command's (its marker) or new; anything else there belongs to the user."""
    if out.exists():
        if not out.is_dir():
            raise BadInput(f"--output {out}: exists and is not a directory")
        marker = read_marker(out)
        if marker is None and any(out.iterdir()):
            raise BadInput(f"--output {out}: exists and was not written by kocpt compare; choose another or move it away")
        if marker is not None and marker["stage"] != STAGE:
            raise BadInput(f"--output {out}: an output of kocpt {marker['stage']}, not of kocpt compare")
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, STAGE)


def tokenizer_directory(path: Path, folder: Path) -> Path:
    """A tokenizer directory every stage takes (a bare SentencePiece file gets one, with its HF files)."""
    if path.is_dir() and ((path / "tokenizer_config.json").is_file() or not (path / "tokenizer.model").is_file()):
        return path
    model = path / "tokenizer.model" if path.is_dir() else path
    if not (folder / "tokenizer_config.json").is_file():
        from tokenizer.spm_hf_export import write_hf_files
        from tokenizer.spm_model import load_model

        staging = new_staging_dir(folder)
        shutil.copyfile(model, staging / "tokenizer.model")
        write_hf_files(load_model(model), staging)
        publish_directory(staging, folder)
    return folder


def tiny_base_model(folder: Path, config: Path, sets: list[str], base_tokenizer: Path, say) -> Path:
    """compare.base_model null: the demo's tiny Llama from the model: section (random weights, seeded)."""
    if (folder / "config.json").is_file():
        return folder
    from kocpt.demo_stages import build_tiny_llama
    from pretrain.config import ModelSection
    from tokenizer.token_encoder import TokenEncoder

    staging = new_staging_dir(folder)
    build_tiny_llama(staging, load_section(ModelSection, "model", config, sets), TokenEncoder.load(base_tokenizer).vocab_size)
    publish_directory(staging, folder)
    say(f"base model: a tiny Llama from the model: section ({folder})")
    return folder


def claim_arm(arm: Arm, common: dict, sets: list[str], overwrite: bool) -> None:
    """An arm's folder holds the digest of its settings: a rerun with other settings is refused (its
    checkpoints and scores belong to those), or, with --overwrite, the arm starts again."""
    settings = {**common, **arm_settings(arm.arm, sets)}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
    record = arm.root / SETTINGS
    if record.is_file():
        if json.loads(record.read_text())["digest"] == digest:
            return
        if not overwrite:
            raise BadInput(f"{arm.root}: arm {arm.arm.name} was run with other settings; rerun them, pass --overwrite "
                           "to retrain it, or choose another --output")
        arm.say("settings changed: training it again (--overwrite)")
        shutil.rmtree(arm.root)
    elif arm.root.exists():
        shutil.rmtree(arm.root)  # a killed first run (inside our own output): nothing finished there
    arm.root.mkdir(parents=True)
    write_file_atomic(record, json.dumps({"digest": digest, "settings": settings}, indent=2, default=str).encode())


def equal_flops_plan(section: CompareSection, shapes: dict[str, ArmShape], reference: str) -> tuple[float, dict]:
    """(training FLOPs of the budget, {arm: its step at each point}): each arm's steps are its share of the
    FLOPs over its FLOPs per step, rounded, so arms differ by at most half a step's FLOPs."""
    ref = shapes[reference]
    if section.budget_flops is not None:
        budget = float(section.budget_flops)
    else:
        budget = max(1, round(section.budget_tokens / ref.tokens_per_step)) * ref.tokens_per_step * ref.flops_per_token
    plan = {}
    for name, shape in shapes.items():
        steps = [round(share * budget / (shape.flops_per_token * shape.tokens_per_step)) for share in section.point_fractions()]
        if steps[0] < 1 or any(later <= earlier for earlier, later in zip(steps, steps[1:])):
            raise BadInput(f"compare: the budget gives arm {name} steps {steps} at its {section.points} points; "
                           "raise compare.budget_tokens (or budget_flops) or lower compare.points")
        plan[name] = steps
    return budget, plan


def held_out_documents(arms: list[Arm], files: dict, section: CompareSection, base_model: Path) -> list:
    from kocpt.compare_scoring import load_tokenizer, model_context, select_documents

    context = section.context or model_context(base_model)
    tokenizers = [load_tokenizer(arm.tokenizer) for arm in arms]
    return [select_documents(language, paths[0], tokenizers, context, section.documents)
            for language, paths in files.items() if paths]


def score_points(arm: Arm, steps: list[int], held_out: list, section: CompareSection) -> dict[int, dict]:
    """{step: scores} at step 0 and at each point: trained (resuming), exported and scored unless already done."""
    from kocpt.compare_scoring import model_context, score_model

    context = section.context or model_context(arm.initial_model)
    scores = {}
    for number, step in enumerate([0, *steps]):
        point = arm.point_file(step)
        head = f"point {number}/{len(steps)} (step {step})"
        if point.is_file():
            scores[step] = json.loads(point.read_text())
            arm.say(f"{head} up to date")
            continue
        if step == 0:
            model = arm.initial_model
        else:
            arm.train_to(step, steps[-1])
            model = arm.export()
        with SCORING:  # one model in memory at a time (with the arm's CPU share when arms run at once)
            scores[step] = score_model(model, arm.tokenizer, held_out, context, threads=arm.cpu_share)
        write_file_atomic(point, json.dumps(scores[step]).encode())
        figures = ", ".join(f"{language} {value['bits_per_char']:.3f}±{value['bits_per_char_se']:.3f}"
                            for language, value in scores[step].items())
        arm.say(f"{head}: bits/char {figures}")
    return scores


if __name__ == "__main__":
    from stagekit.entry import run_main  # Ctrl-C and bad input: one line

    sys.exit(run_main(main))
