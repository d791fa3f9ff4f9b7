"""Running a sequence of stamped stages: each stage runs one command, logs it, and leaves a stamp
holding a digest of what it ran with, so a rerun can skip what is still up to date (`kocpt demo`)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stagekit.paths import REPO


class DemoError(RuntimeError):
    """A stage failed; the message names it and where its log is."""


def file_digest(path: Path) -> str:
    """Content digest of a file or of every file under a directory (names included)."""
    digest = hashlib.sha256()
    paths = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for item in paths:
        digest.update(str(item.relative_to(path) if path.is_dir() else item.name).encode())
        digest.update(hashlib.sha256(item.read_bytes()).digest())
    return digest.hexdigest()


@dataclass
class Stage:
    name: str
    output: Path
    run: Callable[[], None]
    settings: dict = field(default_factory=dict)  # what the stage was configured with
    reads: list[Path] = field(default_factory=list)  # files from outside the demo it depends on
    after: list[str] = field(default_factory=list)  # stages whose output it reads

    def fingerprint(self, stamps: dict[str, str]) -> str:
        payload = {
            "settings": self.settings,
            "reads": {str(path): file_digest(path) for path in self.reads},
            "after": {name: stamps[name] for name in self.after},
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def run_command(name: str, command: list[str], log_dir: Path, env: dict | None = None) -> None:
    """A stage's command with its output in LOG_DIR/NAME.log; a failure names the log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        raise DemoError(f"stage {name} failed (exit {result.returncode}); log: {log_path}\n    " + "\n    ".join(tail))
