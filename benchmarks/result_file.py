"""Where a benchmark's result goes: `benchmarks/results/NAME.json`, written under a temporary name and
renamed when complete, so an interrupted run never leaves half a file where the last good one was."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_result(path: Path, result: dict) -> None:
    """JSON (Korean text kept readable; anything else JSON cannot hold written as its str)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, path)
