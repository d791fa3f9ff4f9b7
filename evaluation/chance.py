"""Chance levels of lm-eval tasks: what guessing uniformly at random scores on the same documents.

- acc / acc_norm: the mean of 1 / (number of choices) over the documents (0.5 for yes/no, 0.25 for 4 options);
- f1 (macro): the expected macro F1 of a uniform guess over k classes, from the gold labels' shares p_c:
  mean over classes of 2 p_c / (k p_c + 1) (the large-sample value);
- spearman, pearson, mcc: 0.

A group (e.g. `kmmlu`) gets the document-weighted mean of its tasks' chance levels, as lm-eval weights
its scores by size.
"""

from __future__ import annotations

import math
from collections import Counter

ZERO_AT_CHANCE = ("spearman", "pearson", "mcc")


def uniform_macro_f1(golds: list[int], classes: int) -> float:
    counts = Counter(golds)
    total = len(golds)
    return sum(2 * (counts[c] / total) / (classes * counts[c] / total + 1) for c in range(classes)) / classes


def documents(task, limit: int | float | None) -> list:
    docs = list(task.eval_docs)
    if limit is not None:
        docs = docs[: int(math.ceil(len(docs) * limit)) if limit < 1.0 else int(limit)]
    return docs


def task_chance(task, limit: int | float | None = None) -> tuple[dict, int]:
    """({metric: chance}, documents) for one lm-eval Task; {} where no chance level is defined (generation)."""
    metrics = [m["metric"] for m in (task.get_config("metric_list") or []) if isinstance(m.get("metric"), str)]
    docs = documents(task, limit)
    out: dict[str, float] = {}
    if task.get_config("output_type") == "multiple_choice" and docs:
        sizes = [len(task.doc_to_choice(doc)) for doc in docs]
        out["acc"] = out["acc_norm"] = sum(1 / n for n in sizes) / len(sizes)
        golds = [task.doc_to_target(doc) for doc in docs]
        if len(set(sizes)) == 1 and all(isinstance(g, int) for g in golds):
            out["f1"] = uniform_macro_f1(golds, sizes[0])
    for name in ZERO_AT_CHANCE:
        out[name] = 0.0
    return {name: value for name, value in out.items() if name in metrics}, len(docs)


def chance_levels(loaded: dict, limit: int | float | None = None) -> dict[str, dict]:
    """{task or group name: {metric: chance}} for the output of `TaskManager.load`."""
    leaves = {name: task_chance(task, limit) for name, task in loaded.get("tasks", {}).items()}
    out = {name: levels for name, (levels, _) in leaves.items()}
    group_map = loaded.get("group_map", {})

    def members(name: str) -> list[str]:
        children = group_map.get(name, [])
        return [leaf for child in children for leaf in (members(child) if child in group_map else [child])]

    for group in group_map:
        rows = [leaves[leaf] for leaf in members(group) if leaf in leaves]
        total = sum(n for _, n in rows)
        common = set.intersection(*(set(levels) for levels, _ in rows)) if rows else set()
        if total:
            out[group] = {metric: sum(levels[metric] * n for levels, n in rows) / total for metric in sorted(common)}
    return out
