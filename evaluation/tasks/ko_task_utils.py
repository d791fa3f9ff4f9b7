"""Helpers the task YAMLs in this folder name with `!function ko_task_utils.NAME`.

lm-eval loads this file by path (not as `evaluation.tasks...`), so it imports nothing from the project.
Each `*_docs` function checks the columns a user's own copy must have and fixes their types (a CSV
reader may turn a review such as "10" into a number), so a wrong file fails with one clear message.
"""

from __future__ import annotations

import math

import numpy as np

NLI_LABELS = ["entailment", "neutral", "contradiction"]
STS_SIMILAR_AT = 3.0  # KorSTS 0-5 scale: 3 = "roughly equivalent"; binary accuracy splits there


def _require(dataset, columns: list[str], task: str) -> None:
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(f"{task}: the data file has no column(s) {missing} (has {dataset.column_names})")


def korsts_docs(dataset):
    _require(dataset, ["sentence1", "sentence2", "score"], "korsts")

    def fix(doc):
        score = float(doc["score"])
        return {"sentence1": str(doc["sentence1"]), "sentence2": str(doc["sentence2"]), "score": score,
                "label": int(score >= STS_SIMILAR_AT)}

    return dataset.map(fix)


def kornli_docs(dataset):
    """KorNLI TSV (`gold_label` as text) or XNLI-style data (`label` 0/1/2; premise/hypothesis)."""
    names = dataset.column_names
    first = "sentence1" if "sentence1" in names else "premise"
    second = "sentence2" if "sentence2" in names else "hypothesis"
    target = "gold_label" if "gold_label" in names else "label"
    _require(dataset, [first, second, target], "kornli")

    def fix(doc):
        label = doc[target]
        if isinstance(label, str) and not label.isdigit():
            if label not in NLI_LABELS:
                raise ValueError(f"kornli: unknown label {label!r} (expected one of {NLI_LABELS})")
            label = NLI_LABELS.index(label)
        return {"sentence1": str(doc[first]).strip(), "sentence2": str(doc[second]).strip(), "label": int(label)}

    return dataset.map(fix)


def kornli_choices(doc) -> list[str]:
    """XNLI's harness template in Korean: premise + ", 맞죠? 네/또한/아니요, " + hypothesis."""
    premise = doc["sentence1"].rstrip(".!?。 ")
    return [f"{premise}, 맞죠? {word}, {doc['sentence2']}" for word in ("네", "또한", "아니요")]


def klue_sts_docs(dataset):
    """KLUE v1.1 STS: `labels` is {"label": .., "real-label": 0-5, "binary-label": 0/1}."""
    _require(dataset, ["sentence1", "sentence2", "labels"], "klue_sts")

    def fix(doc):
        labels = doc["labels"]
        if not isinstance(labels, dict) or "real-label" not in labels or "binary-label" not in labels:
            raise ValueError(f"klue_sts: labels must hold real-label and binary-label, got {labels!r}")
        return {"sentence1": str(doc["sentence1"]), "sentence2": str(doc["sentence2"]),
                "score": float(labels["real-label"]), "label": int(labels["binary-label"])}

    return dataset.map(fix)


def klue_nli_docs(dataset):
    _require(dataset, ["premise", "hypothesis", "gold_label"], "klue_nli")

    def fix(doc):
        label = doc["gold_label"]
        if label not in NLI_LABELS:
            raise ValueError(f"klue_nli: unknown gold_label {label!r} (expected one of {NLI_LABELS})")
        return {"sentence1": str(doc["premise"]).strip(), "sentence2": str(doc["hypothesis"]).strip(),
                "label": NLI_LABELS.index(label)}

    return dataset.map(fix)


def nsmc_docs(dataset):
    _require(dataset, ["document", "label"], "nsmc")
    return dataset.map(lambda doc: {"document": str(doc["document"]), "label": int(doc["label"])})


def korsts_results(doc, results) -> dict:
    """Accuracy of 예/아니오 at the 3.0 split, and the margin log P(예) - log P(아니오) for correlations."""
    lls = [ll for ll, _ in results]
    pred = int(np.argmax(lls))
    margin = lls[1] - lls[0]
    return {"acc": float(pred == doc["label"]), "f1": (doc["label"], pred),
            "spearman": (doc["score"], margin), "pearson": (doc["score"], margin)}


def macro_f1(items) -> float:
    from sklearn.metrics import f1_score

    golds, preds = zip(*items)
    return float(f1_score(golds, preds, average="macro"))


def _correlation(items, kind: str) -> float:
    from scipy import stats

    gold, predicted = (np.asarray(x, dtype=np.float64) for x in zip(*items))
    if len(gold) < 2 or np.ptp(gold) == 0 or np.ptp(predicted) == 0:
        return math.nan  # undefined on a constant input (e.g. a tiny --limit)
    result = stats.spearmanr(gold, predicted) if kind == "spearman" else stats.pearsonr(gold, predicted)
    return float(result[0])


def spearman(items) -> float:
    return _correlation(items, "spearman")


def pearson(items) -> float:
    return _correlation(items, "pearson")


# --------------------------------------------------------------------------- KoBEST (skt/kobest_v1 columns)


def kobest_boolq_docs(dataset):
    _require(dataset, ["paragraph", "question", "label"], "kobest_boolq_local")
    return dataset.map(lambda d: {"paragraph": str(d["paragraph"]), "question": str(d["question"]), "label": int(d["label"])})


def kobest_copa_docs(dataset):
    _require(dataset, ["premise", "question", "alternative_1", "alternative_2", "label"], "kobest_copa_local")

    def fix(doc):
        kind = str(doc["question"]).strip()
        if kind not in ("원인", "결과"):
            raise ValueError(f"kobest_copa_local: question must be 원인 or 결과, got {kind!r}")
        return {"question": kind, "label": int(doc["label"])}

    return dataset.map(fix)


def kobest_copa_text(doc) -> str:
    """KoBEST COPA as lm-eval scores it: premise + " 왜냐하면" (cause) / " 그래서" (effect)."""
    return f"{doc['premise']} {'왜냐하면' if doc['question'] == '원인' else '그래서'}"


def kobest_copa_choices(doc) -> list[str]:
    return [str(doc["alternative_1"]), str(doc["alternative_2"])]


def kobest_sentineg_docs(dataset):
    _require(dataset, ["sentence", "label"], "kobest_sentineg_local")
    return dataset.map(lambda d: {"sentence": str(d["sentence"]), "label": int(d["label"])})


def kobest_wic_docs(dataset):
    _require(dataset, ["word", "context_1", "context_2", "label"], "kobest_wic_local")
    return dataset.map(lambda d: {"label": int(d["label"])})


def kobest_hellaswag_docs(dataset):
    _require(dataset, ["context", "ending_1", "ending_2", "ending_3", "ending_4", "label"], "kobest_hellaswag_local")
    return dataset.map(lambda d: {"query": f"문장: {d['context']}",
                                  "choices": [str(d[f"ending_{i}"]) for i in range(1, 5)], "label": int(d["label"])})
