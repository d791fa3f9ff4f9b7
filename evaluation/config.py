"""`kocpt eval` settings: the `eval:` section of a run config (e.g. configs/demo.yaml), then `--set eval.KEY=VALUE`,
then CLI flags (read by the shared loader, stagekit.config).

    eval:
      korean: [../shared/data/ko-heldout/korean-english-park.test.ko]   # held-out Korean, one document a line
      english: [../shared/data/en/korean-english-park.test.en]
      max_documents: 500      # per text file; 0 = all
      context: null           # tokens per window; null = the model's max_position_embeddings
      stride: null            # null = context // 2
      tasks: [korsts, kornli, nsmc]
      task_data: {}           # e.g. {nsmc: /data/nsmc/ratings_test.txt}
      limit: null             # documents per lm-eval task; null = all
      prompts: ["옛날 옛적에 한 마을에"]
      temperature: 0.0        # samples: 0 = greedy; else sampled from the top_k tokens with sample_seed

Relative paths are relative to the working directory (the repository root for the demo).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from evaluation import BadInput
from stagekit.config import load_section

HELD_OUT = "../shared/data/ko-heldout/korean-english-park.test.ko"
ENGLISH = "../shared/data/en/korean-english-park.test.en"


@dataclass
class EvalConfig:
    korean: list[str] = field(default_factory=lambda: [HELD_OUT])
    english: list[str] = field(default_factory=lambda: [ENGLISH])
    max_documents: int = 500
    context: int | None = None
    stride: int | None = None
    max_batch_tokens: int = 4096  # tokens per forward pass when scoring bits per character
    tasks: list[str] = field(default_factory=lambda: ["korsts", "kornli", "nsmc"])
    task_data: dict[str, str] = field(default_factory=dict)
    limit: int | None = None
    batch_size: int = 8  # lm-eval batch size
    prompts: list[str] = field(default_factory=lambda: ["옛날 옛적에 한 마을에", "대한민국의 수도는"])
    max_new_tokens: int = 40
    # Generation samples: greedy when 0; else sampled at this temperature from the top_k tokens, seeded
    # (greedy text of a tiny model is one token repeated, which hides what it learned).
    temperature: float = 0.0
    top_k: int = 50
    sample_seed: int = 0
    # TensorBoard scalar tags, first one present wins (pretrain/train.py writes loss and val_bpc).
    loss_tags: list[str] = field(default_factory=lambda: ["loss", "lm loss", "train/loss"])
    bpc_tags: list[str] = field(default_factory=lambda: ["val_bpc", "validation/bits_per_char"])
    skip_missing: bool = False  # skip (and say so) text files / task data that do not exist

    def validate(self) -> "EvalConfig":
        from evaluation.lm_eval_tasks import split_task_names

        self.tasks = split_task_names(self.tasks)  # `tasks: [klue_sts,klue_nli]`, as lm-eval's --tasks takes them
        if self.max_documents < 0:
            raise BadInput(f"eval.max_documents must be >= 0 (got {self.max_documents})")
        if self.context is not None and self.context < 2:
            raise BadInput(f"eval.context must be >= 2 (got {self.context})")
        if self.stride is not None and (self.stride < 1 or (self.context and self.stride >= self.context)):
            raise BadInput(f"eval.stride must be in [1, context) (got {self.stride}, context {self.context})")
        if self.limit is not None and self.limit <= 0:
            raise BadInput(f"eval.limit must be positive (got {self.limit})")
        if self.batch_size < 1 or self.max_batch_tokens < 1 or self.max_new_tokens < 0:
            raise BadInput("eval.batch_size and eval.max_batch_tokens must be >= 1, eval.max_new_tokens >= 0")
        if self.temperature < 0 or self.top_k < 1:
            raise BadInput(f"eval.temperature must be >= 0 and eval.top_k >= 1 (got {self.temperature}, {self.top_k})")
        return self


def load_eval_config(path: str | Path | None, overrides=(), flags: dict | None = None) -> EvalConfig:
    """The `eval:` section of a YAML run config (defaults when `path` is None), with `--set eval.KEY=VALUE`
    overrides, then explicit flags, winning; typed and validated by the shared loader."""
    return load_section(EvalConfig, "eval", path, overrides, flags)
