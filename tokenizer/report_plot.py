"""The merge report's figure (report.png): tokens per character before/after for every evaluation text, and
the sweep curve when the report has one. Reads the report.json dict of either family."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_report(report: dict, path: str | Path) -> None:
    """Tokens per character before/after for every evaluation text, and the sweep curve if present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {Path(k).name: (v["base"]["tokens_per_char"], v["merged"]["tokens_per_char"]) for k, v in report["korean"].items()}
    rows.update({Path(k).name: (v["base"], v["merged"]) for k, v in report.get("other_tokens_per_char", {}).items()})
    has_sweep = bool(report.get("sweep"))
    fig, axes = plt.subplots(1, 2 if has_sweep else 1, figsize=(12 if has_sweep else 7, 4.5), squeeze=False)
    ax = axes[0][0]
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [b for b, _ in rows.values()], 0.4, label="base")
    ax.bar(x + 0.2, [m for _, m in rows.values()], 0.4, label="merged")
    ax.set_xticks(x, list(rows), rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("tokens per character")
    ax.set_title("before / after the merge")
    ax.legend()
    if has_sweep:
        ax = axes[0][1]
        for name, points in report["sweep"].items():
            ax.plot([p["added"] for p in points], [p["tokens_per_char"] for p in points], marker="o", label=Path(name).name)
        ax.set_xlabel("added pieces")
        ax.set_ylabel("tokens per character")
        ax.set_title("Korean tokens per character vs added vocabulary")
        ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = Path(path).with_name(f".{Path(path).name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
