"""The ablation's summary over seeds, its table and its plot (see benchmarks/ablation.py)."""

from __future__ import annotations

import statistics
from pathlib import Path

METRICS = ("ko_bpc_0", "ko_bpc_end", "en_bpc_0", "en_bpc_end", "ko_tokens_per_char")


def spread(values: list[float]) -> dict:
    """Mean, sample standard deviation (0 for one value), min, max and count."""
    if not values:
        return {"mean": None, "sd": None, "min": None, "max": None, "n": 0}
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def steps_to_reach(curve: list[dict], target: float) -> float | None:
    """First step where Korean bits per character reach `target`, linear between evaluations; None if never."""
    points = [(p["step"], p["ko_bpc"]) for p in curve]
    if points[0][1] <= target:
        return 0.0
    for (s0, b0), (s1, b1) in zip(points, points[1:]):
        if b1 <= target:
            return s0 + (s1 - s0) * (b0 - target) / (b0 - b1)
    return None


def summarize(runs: dict) -> dict:
    """{replay: {variant: {metric: spread}}}; the target is the no-expansion variant's mean final Korean bpc
    at the same replay share (the main share's when that replay has no no-expansion run)."""
    out: dict[str, dict] = {}
    fallback = budget = None
    for replay, variants in runs.items():
        base = variants.get("no-expansion")
        target = fallback
        if base:
            target = statistics.fmean(r["curve"][-1]["ko_bpc"] for r in base["seeds"].values())
            budget = statistics.fmean(r["train_flops"] for r in base["seeds"].values())
            fallback = fallback or target
        rows = {}
        for name, variant in variants.items():
            seeds = list(variant["seeds"].values())
            row = {
                "ko_bpc_0": spread([r["curve"][0]["ko_bpc"] for r in seeds]),
                "ko_bpc_end": spread([r["curve"][-1]["ko_bpc"] for r in seeds]),
                "en_bpc_0": spread([r["curve"][0]["en_bpc"] for r in seeds]),
                "en_bpc_end": spread([r["curve"][-1]["en_bpc"] for r in seeds]),
                "ko_tokens_per_char": spread([r["curve"][-1]["ko_tokens_per_char"] for r in seeds]),
                "steps": seeds[0]["steps"],
                "train_flops": seeds[0]["train_flops"],
            }
            reached = [steps_to_reach(r["curve"], target) for r in seeds] if target is not None else []
            hit = [s for s in reached if s is not None]
            row["target_ko_bpc"] = target
            row["steps_to_target"] = spread(hit)
            row["seeds_reaching_target"] = len(hit)
            per_step = seeds[0]["train_flops"] / seeds[0]["steps"]
            row["flops_share_to_target"] = spread([s * per_step / budget for s in hit]) if budget else spread([])
            rows[name] = row
        out[replay] = {"target_ko_bpc": target, "variants": rows}
    return out


def _pm(stat: dict, digits: int = 3) -> str:
    if stat["mean"] is None:
        return "–"
    return f"{stat['mean']:.{digits}f}±{stat['sd']:.{digits}f}"


def table_lines(report: dict) -> list[str]:
    """The table as Markdown (the same text is printed and pasted into the README)."""
    seeds = report["settings"]["seeds"]
    out = []
    s = report["standins"]
    out.append(f"Stand-in before the continuation (base tokenizer): with {s['standin']['korean_share']:.0%} Korean "
               f"ko {s['standin']['ko_bpc']:.3f} / en {s['standin']['en_bpc']:.3f} bits/char; with no Korean "
               f"ko {s['no-korean']['ko_bpc']:.3f} / en {s['no-korean']['en_bpc']:.3f}.")
    out.append("")
    out.append(f"Mean ± sample standard deviation over {seeds} seeds. Target = the no-expansion variant's final Korean "
               "bits/char at the same replay share; 'to target' = steps (and share of the FLOPs budget) to reach it, "
               "over the seeds that reached it.")
    out.append("")
    out.append("| replay | variant | steps | ko bpc 0 | ko bpc end | en bpc 0 | en bpc end | ko tok/char | to target: steps | FLOPs share | reached |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for replay, block in report["summary"].items():
        for name, row in block["variants"].items():
            out.append(f"| {float(replay):.0%} | {name} | {row['steps']} | {_pm(row['ko_bpc_0'])} | {_pm(row['ko_bpc_end'])} | "
                       f"{_pm(row['en_bpc_0'])} | {_pm(row['en_bpc_end'])} | {_pm(row['ko_tokens_per_char'])} | "
                       f"{_pm(row['steps_to_target'], 1)} | {_pm(row['flops_share_to_target'], 2)} | "
                       f"{row['seeds_reaching_target']}/{seeds} |")
    return out


def print_table(report: dict) -> None:
    print()
    print("\n".join(table_lines(report)))


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    main = f"{report['settings']['replay']:g}"
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.5))
    for name, variant in report["runs"][main].items():
        seeds = list(variant["seeds"].values())
        x = np.array([p["step"] for p in seeds[0]["curve"]]) / seeds[0]["steps"]
        for ax, key in zip(axes[:2], ("ko_bpc", "en_bpc")):
            values = np.array([[p[key] for p in r["curve"]] for r in seeds])
            line, = ax.plot(x, values.mean(0), marker="o", markersize=3, label=name)
            ax.fill_between(x, values.min(0), values.max(0), color=line.get_color(), alpha=0.15)
    axes[0].set_title(f"Korean bits/char (ko-heldout), replay {float(main):.0%}")
    axes[1].set_title(f"English bits/char (en news), replay {float(main):.0%}")
    for ax in axes[:2]:
        ax.set_xlabel("share of the training FLOPs budget")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    ax = axes[2]
    names = sorted({n for block in report["summary"].values() for n in block["variants"]
                    if sum(n in b["variants"] for b in report["summary"].values()) > 1})
    for name in names:
        pts = sorted((float(r), b["variants"][name]) for r, b in report["summary"].items() if name in b["variants"])
        ax.errorbar([p[1]["en_bpc_end"]["mean"] for p in pts], [p[1]["ko_bpc_end"]["mean"] for p in pts],
                    xerr=[p[1]["en_bpc_end"]["sd"] for p in pts], yerr=[p[1]["ko_bpc_end"]["sd"] for p in pts],
                    marker="o", capsize=2, label=name)
        for replay, row in pts:
            ax.annotate(f"{replay:.0%}", (row["en_bpc_end"]["mean"], row["ko_bpc_end"]["mean"]), fontsize=7)
    ax.set_title("End of run by English replay share")
    ax.set_xlabel("English bits/char (lower: less forgetting)")
    ax.set_ylabel("Korean bits/char")
    ax.grid(alpha=0.3)
    if names:
        ax.legend(fontsize=7)
    fig.suptitle(f"Vocabulary-expansion ablation: mean over {report['settings']['seeds']} seeds, band = min-max")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
