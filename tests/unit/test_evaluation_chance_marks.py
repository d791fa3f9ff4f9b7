"""The evaluation report marks task scores that are indistinguishable from chance and says which figures
mean something for a small model."""

from __future__ import annotations

from evaluation.report import at_chance, markdown


def test_scores_within_two_standard_errors_of_chance_are_marked():
    # 20 yes/no documents: the standard error of guessing is sqrt(.25 / 20) = 0.112.
    assert at_chance(0.55, 0.5, "acc", 20) and at_chance(0.30, 0.5, "acc", 20)
    assert not at_chance(0.75, 0.5, "acc", 20)
    assert not at_chance(0.55, 0.5, "acc", 2000)  # 0.011: five standard errors away
    assert at_chance(0.3, 0.0, "spearman", 20) and not at_chance(0.6, 0.0, "spearman", 20)
    assert not at_chance(None, 0.5, "acc", 20) and not at_chance(0.5, None, "acc", 20)
    assert not at_chance(0.5, 0.5, "acc", None)


def test_report_marks_chance_scores_and_names_the_meaningful_figures():
    model = {"label": "trained", "parameters": 1000, "vocab": {"tokenizer": 100}, "bpc": {},
             "tasks": {"nsmc": {"acc": 0.5}, "korsts": {"spearman": 0.9}},
             "task_chance": {"nsmc": {"acc": 0.5}, "korsts": {"spearman": 0.0}},
             "task_samples": {"nsmc": {"effective": 20, "original": 5000}, "korsts": {"effective": 20, "original": 1379}}}
    text = markdown({"models": [model], "texts": {}, "task_columns": [["nsmc", "acc"], ["korsts", "spearman"]]})
    assert "| **trained** | 0.500 † | 0.900 |" in text, text
    assert "| *chance* | 0.500 | 0.000 |" in text
    assert "(1 of 2 scores)" in text and "bits per character and tokens per character" in text
