"""Evaluation that compares across tokenizers: bits per character, lm-eval tasks on local files, the report.

- `bpc.py`: bits per character / per UTF-8 byte for any Hugging Face causal LM + tokenizer.
- `tasks/`: lm-eval-harness task YAMLs (KorSTS, KorNLI, NSMC-style, KoBEST) reading local files.
- `lm_eval_tasks.py`: runs those tasks through `lm_eval.simple_evaluate` on an in-memory model.
- `report.py`: eval.json, the Markdown table and the PNG plots.
- `run.py`: `kocpt eval`.
- `sft.py`: the instruction prompt formats the Korean SFT projects use (see SFT.md).
"""


from stagekit.errors import BadInput  # noqa: F401  (the one bad-input error of every stage)
