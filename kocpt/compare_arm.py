"""One arm of `kocpt compare`: its stages, run as the project's own commands, in its own folder.

    OUTPUT/arms/NAME/resized        kocpt checkpoints resize (expanded arms; the base arm starts from the base model)
                     megatron-init  kocpt checkpoints convert --to megatron
                     tokenized      kocpt tokenize (the training corpus under this arm's tokenizer)
                     pretrain       pretrain/launch.sh (processes on CPU, srun under SLURM): one run, one stage,
                                    stopped at each evaluation point by pretrain.exit_after_steps
                     hf             kocpt checkpoints convert --to hf of the latest point (replaced at each point)
                     points/STEP.json  the scores at that step
                     logs/          every command's log

Each stage writes its output under a temporary name and renames it when done, so an output that exists
is complete: a rerun skips it. Training resumes from the run's latest checkpoint (the trainer's own resume).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kocpt.compare_config import ARM_SECTIONS, ArmSection
from kocpt.stage_runner import DemoError, run_command
from stagekit.config import parse_override
from stagekit.errors import BadInput
from stagekit.paths import REPO

ITERATION = re.compile(r"iter_(\d+)$")


def set_args(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


@dataclass
class ArmShape:
    """What the FLOPs accounting needs of an arm (pretrain/flops.py, as the trainer counts)."""

    flops_per_token: float  # training FLOPs per token (forward + backward), padded LM head included
    tokens_per_step: int  # global batch x sequence length
    vocab_rows: int  # the tokenizer's rows (inference)
    forward_flops_per_token: float  # inference: one forward pass per token, unpadded rows
    characters_per_token: float  # of the tokenized training corpus (its manifest)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Arm:
    """The commands of one arm; `say` prints its progress lines."""

    def __init__(self, arm: ArmSection, root: Path, config: Path, sets: list[str], base_model: Path,
                 base_tokenizer: Path, corpus: Path, beam_args: list[str], say: Callable[[str], None],
                 cpu_share: int | None = None):
        self.arm, self.root, self.config, self.say = arm, root, config, say
        # CPUs this arm's training may use when arms run at once (launch.sh's KOCPT_CPUS): threads past
        # the cores make every OpenMP thread wait on the others (measured: 0.3 s steps became 2.5 s).
        self.cpu_share = cpu_share
        self.sets = [*sets, *arm.set]  # the arm's own items last: they win
        self.base_model, self.corpus, self.beam_args = base_model, corpus, beam_args
        self.tokenizer = (REPO / arm.tokenizer).resolve() if arm.tokenizer else base_tokenizer
        self.base_tokenizer = base_tokenizer
        self.logs = root / "logs"

    # ------------------------------------------------------------------ paths
    @property
    def initial_model(self) -> Path:
        return self.root / "resized" if self.arm.expanded else self.base_model

    def start_flops(self) -> float:
        """FLOPs spent making the starting rows (resize's LM-head calibration forward pass and input-row
        distillation; 0 for the others)."""
        report = self.initial_model / "resize_report.json"
        if not (self.arm.expanded and report.is_file()):
            return 0.0
        fits = json.loads(report.read_text())
        return float((fits.get("calibration") or {}).get("forward_flops", 0.0)
                     + (fits.get("distillation") or {}).get("flops", 0.0))

    @property
    def megatron_init(self) -> Path:
        return self.root / "megatron-init"

    @property
    def tokenized(self) -> Path:
        return self.root / "tokenized"

    @property
    def run_dir(self) -> Path:
        return self.root / "pretrain"

    @property
    def hf(self) -> Path:
        return self.root / "hf"

    def point_file(self, step: int) -> Path:
        return self.root / "points" / f"{step}.json"

    # ------------------------------------------------------------------ stages
    def for_sections(self, *sections: str) -> list[str]:
        return [item for item in self.sets if parse_override(item)[0] in sections]

    def command(self, name: str, *args, env: dict | None = None) -> None:
        started = time.time()
        run_command(name, [sys.executable, *map(str, args)], self.logs, env)
        self.say(f"{name} done in {time.time() - started:.0f}s")

    def prepare(self) -> None:
        """Resize (expanded arms), convert to Megatron-Core, tokenize the corpus: each unless done."""
        config = ["--config", self.config]
        checkpoints = set_args(self.for_sections("checkpoints"))
        if self.arm.expanded and not self.initial_model.exists():
            flags = [*(["--init", self.arm.init] if self.arm.init else []),
                     *(["--lm-head", self.arm.lm_head] if self.arm.lm_head else [])]
            self.command("resize", "-m", "checkpoints.resize", "--model", self.base_model, "--tokenizer", self.tokenizer,
                         "--output", self.initial_model, "--base-tokenizer", self.base_tokenizer, *config,
                         *checkpoints, *flags)
        if not self.megatron_init.exists():
            self.command("convert", "-m", "checkpoints.convert", "--to", "megatron", "--input", self.initial_model,
                         "--output", self.megatron_init, *config, *checkpoints)
        if not (self.tokenized / "manifest.json").is_file():
            self.command("tokenize", "-m", "pipelines.tokenize_corpus", self.corpus, self.tokenized,
                         "--tokenizer", self.tokenizer, *config, *set_args(self.for_sections("tokenize")), *self.beam_args)

    def pretrain_overrides(self, total_steps: int, stop_at: int | None) -> list[str]:
        """The user's pretrain/model items and the arm's, then the comparison's own (which win): this arm's
        data, weights and run folder, one stage of `total_steps` (the schedule of the whole run), stopping
        (with a checkpoint) after `stop_at` more steps."""
        blend = json.dumps([{"path": str(self.tokenized), "weight": 1.0}])
        return [*self.for_sections("pretrain", "model"), f"pretrain.tokenizer={json.dumps(str(self.tokenizer))}",
                f"pretrain.init.megatron_checkpoint={json.dumps(str(self.megatron_init))}",
                f"pretrain.data.blend={blend}", f"pretrain.checkpoint.dir={json.dumps(str(self.run_dir))}",
                "pretrain.stages=[]", f"pretrain.train_steps={total_steps}",
                f"pretrain.exit_after_steps={stop_at if stop_at else 'null'}"]

    def shape(self) -> ArmShape:
        """FLOPs per token as the trainer counts them (the stored, padded vocabulary of the initial weights)."""
        from mcore_llama.run_dir import read_model_metadata
        from pretrain.config import load_config
        from pretrain.flops import flops_per_token

        settings = load_config(self.config, self.pretrain_overrides(1, None)).pretrain
        meta = read_model_metadata(self.megatron_init)
        manifest = json.loads((self.tokenized / "manifest.json").read_text())
        seq = settings.seq_length
        return ArmShape(
            flops_per_token=flops_per_token(meta.shape, seq, meta.padded_vocab_size),
            tokens_per_step=settings.global_batch_size * seq,
            vocab_rows=meta.shape.vocab_size,
            forward_flops_per_token=flops_per_token(meta.shape, seq, meta.shape.vocab_size) / 3,  # 2 of 6 per parameter
            characters_per_token=manifest["characters"] / max(manifest["tokens"], 1),
        )

    def trained_steps(self) -> int:
        """The step of the run's latest checkpoint (0 before the first)."""
        from mcore_llama.run_dir import latest_checkpoint

        latest = latest_checkpoint(self.run_dir) if self.run_dir.is_dir() else None
        match = ITERATION.search(latest.name) if latest is not None else None
        return int(match.group(1)) if match else 0

    def train_to(self, step: int, total_steps: int) -> None:
        """Train (resuming the run) until its latest checkpoint is at `step`."""
        done = self.trained_steps()
        if done > step:
            raise BadInput(f"{self.run_dir}: its latest checkpoint is at step {done}, past the evaluation point at "
                           f"step {step}; the arm was trained with other settings (rerun with --overwrite)")
        if done == step:
            return
        stop_at = None if step == total_steps else step - done
        started = time.time()
        run_command(f"pretrain-{step}", ["bash", str(REPO / "pretrain" / "launch.sh"), str(self.config),
                                         *set_args(self.pretrain_overrides(total_steps, stop_at))],
                    self.logs, {"KOCPT_PYTHON": sys.executable, "KOCPT_STOP_FILE": str(self.root / "stop-request"),
                                **({"KOCPT_CPUS": str(self.cpu_share)} if self.cpu_share else {})})
        self.say(f"pretrain to step {step} done in {time.time() - started:.0f}s")
        if self.trained_steps() != step:
            raise DemoError(f"pretrain stopped at step {self.trained_steps()}, not {step}; log: {self.logs}/pretrain-{step}.log")

    def export(self) -> Path:
        """The latest checkpoint as a Hugging Face model in `hf/` (the previous point's replaced)."""
        self.command("export", "-m", "checkpoints.convert", "--to", "hf", "--input", self.run_dir, "--output", self.hf,
                     "--tokenizer", self.tokenizer, "--overwrite", "--config", self.config,
                     *set_args(self.for_sections("checkpoints")))
        return self.hf


def arm_settings(arm: ArmSection, sets: list[str]) -> dict:
    """What an arm's outputs depend on besides the files (the comparison adds the budget and documents)."""
    return {"arm": arm.__dict__, "sets": [item for item in sets if parse_override(item)[0] in ARM_SECTIONS]}
