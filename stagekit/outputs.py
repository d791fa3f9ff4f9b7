"""Publishing a stage's output directory: written under a temporary name beside it, then renamed, so
a reader never sees a half-written output and a failed run never loses the previous good one."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def publish_directory(staging: str | Path, target: str | Path) -> None:
    """Rename the finished `staging` directory to `target`; an existing `target` is moved aside first
    and deleted only once the new one is in place."""
    staging, target = Path(staging), Path(target)
    if not target.exists():
        os.rename(staging, target)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rename(target, trash / target.name)
    os.rename(staging, target)
    shutil.rmtree(trash, ignore_errors=True)
