"""The evaluation report: eval.json, a Markdown table, and PNG plots.

Inputs besides the per-model figures: TensorBoard event files of the pretraining run (training loss
and validation bits per character over steps, read with tensorboard's EventAccumulator) and the
tokenizer stage's report.json (Korean tokens per character before/after the merge).
Every file is written under a temporary name and renamed, so a crash never leaves a complete-looking
but partial report; eval.json is written last.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from evaluation import BadInput

# --------------------------------------------------------------------------- inputs


def event_dirs(root: str | Path) -> list[Path]:
    """Directories under `root` (itself included) that hold TensorBoard event files."""
    root = Path(root)
    if not root.is_dir():
        raise BadInput(f"{root}: TensorBoard log directory not found")
    found = sorted({p.parent for p in root.rglob("events.out.tfevents.*")})
    if not found:
        raise BadInput(f"{root}: no TensorBoard event files (events.out.tfevents.*) in it")
    return found


def read_scalars(root: str | Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} over every event file under `root`, sorted by step.

    A resumed run logs some steps twice (the steps after its last checkpoint); the later write wins.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    latest: dict[str, dict[int, tuple[float, float]]] = {}
    for directory in event_dirs(root):
        accumulator = EventAccumulator(str(directory), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags().get("scalars", []):
            points = latest.setdefault(tag, {})
            for event in accumulator.Scalars(tag):
                if event.step not in points or event.wall_time >= points[event.step][0]:
                    points[event.step] = (event.wall_time, float(event.value))
    return {tag: sorted((step, value) for step, (_, value) in points.items()) for tag, points in latest.items()}


def pick(scalars: dict[str, list], tags: list[str]) -> tuple[str | None, list[tuple[int, float]]]:
    for tag in tags:
        if scalars.get(tag):
            return tag, scalars[tag]
    return None, []


def training_curves(root: str | Path, loss_tags: list[str], bpc_tags: list[str]) -> dict:
    scalars = read_scalars(root)
    loss_tag, loss = pick(scalars, loss_tags)
    bpc_tag, bpc = pick(scalars, bpc_tags)
    if not loss and not bpc:
        raise BadInput(f"{root}: none of the scalar tags {loss_tags + bpc_tags} in the TensorBoard logs "
                       f"(found: {sorted(scalars)})")
    return {
        "tensorboard": str(root), "loss_tag": loss_tag, "bpc_tag": bpc_tag,
        "loss": [[s, v] for s, v in loss], "val_bpc": [[s, v] for s, v in bpc],
        "loss_first": loss[0][1] if loss else None, "loss_last": loss[-1][1] if loss else None,
        "val_bpc_first": bpc[0][1] if bpc else None, "val_bpc_last": bpc[-1][1] if bpc else None,
    }


def tokenizer_figures(path: str | Path) -> dict:
    """The figures `kocpt eval` reports from a tokenizer directory's report.json, of either tokenizer family
    (the one schema: tokenizer/report_schema.py)."""
    from tokenizer.report_schema import TokenizerReport

    report = TokenizerReport.read(path)
    korean = {Path(name).name: {side: {k: v for k, v in figures.to_dict().items()
                                       if k in ("tokens_per_char", "byte_token_share", "tokens_per_word") and v is not None}
                                for side, figures in row.items()}
              for name, row in report.korean.items()}
    other = {Path(name).name: dict(row) for name, row in report.other_tokens_per_char.items()}
    identity = {Path(name).name: row.get("share") for name, row in report.identity.items()}
    vocab = report.vocab and {"base_size": report.vocab.base_size, "added": report.vocab.added,
                              "size": report.vocab.size, "unit": report.vocab.unit}
    return {"report": str(path), "kind": report.kind, "vocab": vocab, "korean": korean,
            "other_tokens_per_char": other, "identity_share": identity}


# --------------------------------------------------------------------------- writing


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_json(path: Path, payload: dict) -> None:
    _write_atomic(path, (json.dumps(payload, ensure_ascii=False, indent=2, allow_nan=False,
                                    default=_json_default) + "\n").encode("utf-8"))


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def finite_or_none(payload):
    """NaN/inf -> None everywhere, so eval.json stays strict JSON."""
    if isinstance(payload, float):
        return payload if math.isfinite(payload) else None
    if isinstance(payload, dict):
        return {k: finite_or_none(v) for k, v in payload.items()}
    if isinstance(payload, (list, tuple)):
        return [finite_or_none(v) for v in payload]
    return payload


def at_chance(value, chance, metric: str, documents) -> bool:
    """True when a task score is within two standard errors of its chance level on `documents` documents.

    The standard error is that of guessing: sqrt(c (1 - c) / n) for accuracy-like metrics (acc, f1) at chance c,
    1 / sqrt(n - 1) for correlations (spearman, pearson, mcc: chance 0). Unknown count or chance: not marked.
    """
    if value is None or chance is None or not documents or documents < 2 or not math.isfinite(value):
        return False
    if metric in ("spearman", "pearson", "mcc"):
        error = 1 / math.sqrt(documents - 1)
    elif 0 < chance < 1:
        error = math.sqrt(chance * (1 - chance) / documents)
    else:
        return False
    return abs(value - chance) <= 2 * error


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def _with_error(value, error) -> str:
    return _fmt(value) if value is None or error is None else f"{_fmt(value)} ± {_fmt(error)}"


def _text_label(kind: str, name: str, texts: dict) -> str:
    short = "ko" if kind == "korean" else "en"
    return short if len(texts.get(kind, {})) == 1 else f"{short}:{Path(name).stem}"


def markdown(result: dict) -> str:
    models = result["models"]
    texts = [(kind, name) for kind in ("korean", "english") for name in result["texts"].get(kind, {})]
    tasks = result.get("task_columns", [])
    lines = ["# kocpt evaluation", ""]
    lines.append("Bits per character (bpc) and per UTF-8 byte do not depend on the tokenizer, so models with "
                 "different vocabularies compare directly (lower is better); tokens/char is the tokenizer's cost.")
    lines.append("")
    header = ["model", "parameters", "vocab"]
    for kind, name in texts:
        label = _text_label(kind, name, result["texts"])
        header += [f"{label} bpc", f"{label} bits/byte", f"{label} tokens/char"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for model in models:
        row = [f"**{model['label']}**", _fmt(model["parameters"]), _fmt(model["vocab"]["tokenizer"])]
        for kind, name in texts:
            bpc = (model["bpc"].get(kind) or {}).get(name)
            row += [_with_error(bpc and bpc["bits_per_char"], bpc and bpc.get("bits_per_char_se")),
                    _fmt(bpc and bpc["bits_per_byte"]), _fmt(bpc and bpc["tokens_per_char"])]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    described = []
    for kind, name in texts:
        info = result["texts"][kind][name]
        described.append(f"{_text_label(kind, name, result['texts'])} = {name} ({info['documents']:,} documents, "
                         f"{info['characters']:,} characters)")
    windows = sorted({(row["context"], row["stride"]) for m in models for rows in m["bpc"].values() for row in rows.values()})
    if described:
        lines.append("Texts: " + "; ".join(described) + ". Each document is scored after a BOS token; a document "
                     "longer than the context is scored by a sliding window (" +
                     ", ".join(f"context {c}, stride {s}" for c, s in windows) + "). bpc ± its standard error: a "
                     "bootstrap over documents.")
        windowed = [f"{model['label']} {_text_label(kind, name, result['texts'])} {row['windowed_documents']:,}"
                    for model in models for kind, rows in model["bpc"].items() for name, row in rows.items()
                    if row.get("windowed_documents")]
        if windowed:
            lines.append("Not whole documents: some did not fit one window (" + "; ".join(windowed) + "), and a window "
                         "of N tokens holds more characters for a tokenizer with more Korean pieces, so those models "
                         "compare on unequal context: raise eval.context to the longest document.")
        lines.append("")
    if tasks:
        lines += ["## Korean tasks (lm-eval, zero-shot)", ""]
        lines.append("| model | " + " | ".join(f"{task} {metric}" for task, metric in tasks) + " |")
        lines.append("|" + "---|" * (len(tasks) + 1))
        chance = {}
        for model in models:
            for task, levels in (model.get("task_chance") or {}).items():
                chance.setdefault(task, levels)
        samples = next((m.get("task_samples") for m in models if m.get("task_samples")), {}) or {}
        marked = 0
        for model in models:
            cells = []
            for task, metric in tasks:
                value = (model.get("tasks") or {}).get(task, {}).get(metric)
                flag = at_chance(value, chance.get(task, {}).get(metric), metric, (samples.get(task) or {}).get("effective"))
                marked += flag
                cells.append(_fmt(value) + (" †" if flag else ""))
            lines.append(f"| **{model['label']}** | " + " | ".join(cells) + " |")
        lines.append("| *chance* | " + " | ".join(_fmt(chance.get(task, {}).get(metric)) for task, metric in tasks) + " |")
        lines.append("")
        lines.append(f"† at chance: within two standard errors of the chance level on this many documents "
                     f"({marked} of {len(tasks) * len(models)} scores), so it says nothing about the model. "
                     "Which figures mean something: bits per character and tokens per character (and the training "
                     "loss) measure every model, however small; task scores rise above chance only for far larger "
                     "models than the demo's few million parameters, and on a few dozen documents even a real "
                     "difference of a few points is noise.")
        lines.append("")
        counts = ", ".join(f"{task} {n.get('effective', '?'):,} of {n.get('original', '?'):,}" for task, n in samples.items())
        lines.append("Zero-shot log-likelihood multiple choice"
                     f"{f' (documents: {counts})' if counts else ''}. korsts/klue_sts spearman, pearson: correlation "
                     "of log P(예) - log P(아니오) with the gold similarity; acc: accuracy; f1: macro F1. Chance: "
                     "the score of guessing uniformly at random on the same documents (acc: mean 1/choices; f1: "
                     "expected macro F1; correlations: 0).")
        lines.append("")
    tok = result.get("tokenizer")
    if tok:
        lines += ["## Tokenizer", ""]
        vocab = tok.get("vocab") or {}
        if vocab:
            lines.append(f"Vocabulary {vocab['base_size']:,} -> {vocab['size']:,} {vocab['unit']} (+{vocab['added']:,}"
                         f"{', ' + tok['kind'] if tok.get('kind') else ''}).")
            lines.append("")
        lines += ["| text | tokens/char before | after | byte-token share before | after |", "|---|---|---|---|---|"]
        for name, row in tok["korean"].items():
            lines.append(f"| {name} | {_fmt(row['base'].get('tokens_per_char'))} | {_fmt(row['merged'].get('tokens_per_char'))} "
                         f"| {_fmt(row['base'].get('byte_token_share'))} | {_fmt(row['merged'].get('byte_token_share'))} |")
        for name, row in tok["other_tokens_per_char"].items():
            lines.append(f"| {name} | {_fmt(row['base'])} | {_fmt(row['merged'])} | | |")
        if tok["identity_share"]:
            lines.append("")
            lines.append("Non-Korean text tokenized exactly as by the base tokenizer: " + ", ".join(
                f"{name} {share:.2%}" for name, share in tok["identity_share"].items() if share is not None) + ".")
        lines.append("")
    training = result.get("training")
    if training:
        lines += ["## Training", ""]
        if training["loss"]:
            lines.append(f"Training loss ({training['loss_tag']}): {_fmt(training['loss_first'])} at step "
                         f"{training['loss'][0][0]} -> {_fmt(training['loss_last'])} at step {training['loss'][-1][0]}.")
        if training["val_bpc"]:
            lines.append(f"Validation bits per character ({training['bpc_tag']}): {_fmt(training['val_bpc_first'])} at step "
                         f"{training['val_bpc'][0][0]} -> {_fmt(training['val_bpc_last'])} at step {training['val_bpc'][-1][0]}.")
        lines.append("")
    samples = [(m["label"], s) for m in models for s in (m.get("generation") or [])]
    if samples:
        settings = result.get("settings", {})
        how = ("greedy" if not settings.get("temperature") else
               f"sampled: temperature {settings['temperature']}, top {settings.get('top_k')}, seed {settings.get('sample_seed')}")
        lines += [f"## Generation samples ({how})", ""]
        for label, sample in samples:
            lines.append(f"- **{label}**: `{sample['prompt']}` → {sample['completion']!r}")
        lines.append("")
    plots = result.get("files", {}).get("plots", [])
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    for note in result.get("notes", []):
        lines.append(f"> {note}")
    return "\n".join(lines).rstrip() + "\n"


def write_markdown(path: Path, result: dict) -> None:
    _write_atomic(path, markdown(result).encode("utf-8"))


# --------------------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    _pyplot().close(fig)
    os.replace(tmp, path)


def plot_training(path: Path, training: dict) -> None:
    plt = _pyplot()
    panels = [(key, label) for key, label in (("loss", "training loss"), ("val_bpc", "validation bits per character"))
              if training[key]]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        steps, values = zip(*training[key])
        ax.plot(steps, values, marker="o" if len(steps) < 40 else None, markersize=3)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.set_title(f"{label} ({training['loss_tag' if key == 'loss' else 'bpc_tag']})")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def plot_tokens_per_char(path: Path, tokenizer: dict) -> None:
    import numpy as np

    plt = _pyplot()
    rows = {f"ko: {n}": (r["base"].get("tokens_per_char"), r["merged"].get("tokens_per_char"))
            for n, r in tokenizer["korean"].items()}
    rows.update({n: (r["base"], r["merged"]) for n, r in tokenizer["other_tokens_per_char"].items()})
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(rows)), 4))
    before = ax.bar(x - 0.2, [b or 0 for b, _ in rows.values()], 0.4, label="before (base tokenizer)")
    after = ax.bar(x + 0.2, [a or 0 for _, a in rows.values()], 0.4, label="after (merged)")
    ax.bar_label(before, fmt="%.2f", fontsize=8)
    ax.bar_label(after, fmt="%.2f", fontsize=8)
    ax.set_xticks(x, list(rows), rotation=15, ha="right", fontsize=8)
    ax.set_ylabel("tokens per character")
    ax.set_title("Tokens per character before / after the merge")
    ax.legend()
    fig.tight_layout()
    _save(fig, path)


def plot_bits_per_char(path: Path, result: dict) -> None:
    import numpy as np

    plt = _pyplot()
    texts = [(kind, name) for kind in ("korean", "english") for name in result["texts"].get(kind, {})]
    models = result["models"]
    x = np.arange(len(texts))
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(texts)), 4))
    for i, model in enumerate(models):
        values = [((model["bpc"].get(kind) or {}).get(name) or {}).get("bits_per_char") or 0 for kind, name in texts]
        bars = ax.bar(x - 0.4 + width * (i + 0.5), values, width, label=model["label"])
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, [f"{'ko' if k == 'korean' else 'en'}: {n}" for k, n in texts], fontsize=8)
    ax.set_ylabel("bits per character (lower is better)")
    ax.set_title("Bits per character by model")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
