"""The `compare:` section of a run config: what `kocpt compare` trains and scores.

    compare:
      corpus: demo-output/corpus            # corpus shards (kocpt corpus) every arm trains on
      base_model: null                      # HF Llama dir; null: a tiny model from the model: section
      base_tokenizer: null                  # null: tokenizer.base, else the demo's stand-in (as kocpt demo)
      budget_tokens: 20000                  # training tokens of the reference arm; every arm gets its FLOPs
      points: 3                             # evaluation points at equal FLOPs (each doubles the one before)
      documents: 200                        # whole held-out documents per language (eval: section's files)
      beam_args: [--direct_running_mode=in_memory]   # for kocpt tokenize (a small corpus: no worker processes)
      arms:
        - {name: base}                                           # the unexpanded base
        - {name: expanded, tokenizer: demo-output/tokenizer}     # merged tokenizer, checkpoints: section's init
        - {name: random-init, tokenizer: demo-output/tokenizer, init: random}

Paths are relative to the repository root (where the stages run), as for `kocpt demo`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from stagekit.config import parse_override
from stagekit.errors import BadInput

ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# The sections an arm's own `set:` items may change (what its stages read).
ARM_SECTIONS = ("pretrain", "model", "checkpoints", "tokenize")


@dataclass
class ArmSection:
    """One arm: the unexpanded base (no tokenizer) or an expanded model (a merged tokenizer, resized)."""

    name: str = "base"
    tokenizer: str | None = None  # merged tokenizer directory; null: the base tokenizer, no resize
    init: str | None = None  # new-row init for the resize (null: checkpoints.resize.init)
    lm_head: str | None = None  # LM-head rows (null: checkpoints.resize.lm_head)
    set: list[str] = field(default_factory=list)  # `--set` items for this arm's stages only

    @property
    def expanded(self) -> bool:
        return self.tokenizer is not None


def default_arms() -> list[ArmSection]:
    return [ArmSection(name="base"), ArmSection(name="expanded", tokenizer="demo-output/tokenizer")]


@dataclass
class CompareSection:
    corpus: str = "demo-output/corpus"
    base_model: str | None = None
    base_tokenizer: str | None = None
    arms: list[ArmSection] = field(default_factory=default_arms)
    reference: str | None = None  # the arm gaps are measured against (null: the first unexpanded arm)
    budget_tokens: float | None = None  # training tokens of the reference arm
    budget_flops: float | None = None  # or the training FLOPs of every arm
    points: int = 3
    documents: int = 200
    context: int | None = None  # scoring window in tokens (null: the model's max_position_embeddings)
    beam_args: list[str] = field(default_factory=list)  # Beam options for kocpt tokenize (a runner, its workers)
    # Arms prepared and trained at once: 1 where each launch takes the whole allocation (a cluster); 2 on a
    # small CPU machine, where the arms' process start-ups (mostly one core importing) then overlap.
    concurrent_arms: int = 1

    def validate(self) -> None:
        if (self.budget_tokens is None) == (self.budget_flops is None):
            raise ValueError("set budget_tokens (the reference arm's training tokens) or budget_flops, one of them")
        budget = self.budget_tokens if self.budget_tokens is not None else self.budget_flops
        if not budget > 0:
            raise ValueError(f"the budget must be > 0, got {budget}")
        if self.points < 1:
            raise ValueError(f"points must be >= 1, got {self.points}")
        if self.documents < 2:
            raise ValueError(f"documents must be >= 2 (a standard error needs two), got {self.documents}")
        if self.concurrent_arms < 1:
            raise ValueError(f"concurrent_arms must be >= 1, got {self.concurrent_arms}")
        if self.context is not None and self.context < 2:
            raise ValueError(f"context must be >= 2, got {self.context}")
        if len(self.arms) < 2:
            raise ValueError(f"a comparison needs 2 or more arms, got {len(self.arms)}")
        names = [arm.name for arm in self.arms]
        for index, arm in enumerate(self.arms):
            if not ARM_NAME.match(arm.name):
                raise ValueError(f"arms.{index}.name {arm.name!r}: letters, digits, '.', '_' or '-' (it names a folder)")
            if arm.name in names[:index]:
                raise ValueError(f"arms.{index}.name {arm.name!r}: an earlier arm has this name")
            if not arm.expanded and (arm.init or arm.lm_head):
                raise ValueError(f"arms.{index} ({arm.name}): init and lm_head need a tokenizer (an expanded arm)")
            for item in arm.set:
                try:
                    section = parse_override(item)[0]
                except BadInput as exc:
                    raise ValueError(f"arms.{index}.set: {exc}") from None
                if section not in ARM_SECTIONS:
                    raise ValueError(f"arms.{index}.set {item!r}: an arm may set {', '.join(ARM_SECTIONS)} only")
        if self.reference is not None and self.reference not in names:
            raise ValueError(f"reference {self.reference!r}: no arm has this name (arms: {', '.join(names)})")

    @property
    def reference_arm(self) -> ArmSection:
        if self.reference is not None:
            return next(arm for arm in self.arms if arm.name == self.reference)
        return next((arm for arm in self.arms if not arm.expanded), self.arms[0])

    def point_fractions(self) -> list[float]:
        """Shares of the budget where every arm is scored (besides step 0): each point doubles the FLOPs of the
        one before, so the points are evenly spaced on a log-token axis."""
        return [2.0 ** -(self.points - 1 - k) for k in range(self.points)]
