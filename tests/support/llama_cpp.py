"""llama-cpp-python for the tests: from the environment, or built once from the pinned sdist into kocpt's
cache (minutes the first time; pip's wheel cache makes later builds fast)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from serving.gguf_export import LLAMA_CPP_PYTHON
from stagekit.wheels import cache_dir, cache_lock


def ensure_llama_cpp() -> None:
    """Import llama_cpp from the environment, or from a cached `pip install --target` of the pinned release."""
    if importlib.util.find_spec("llama_cpp"):
        return
    target = cache_dir() / f"llama-cpp-python-{LLAMA_CPP_PYTHON}-py{sys.version_info[0]}{sys.version_info[1]}"
    with cache_lock(target.parent, target.name):  # test workers may start it together
        if not (target / "llama_cpp").is_dir():
            _build(target)
    sys.path.insert(0, str(target))


def _build(target: Path) -> None:
    """pip install --target a staging folder, then rename: a killed build leaves no half-built import."""
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    # --no-deps: numpy, jinja2 and typing-extensions come from the environment; diskcache is its only extra.
    # LLAVA_BUILD=OFF: the tests never load the multimodal library (llama_cpp imports it lazily), and not
    # compiling it shortens the build that a clean CI machine makes once.
    env = {**os.environ, "CMAKE_ARGS": os.environ.get("CMAKE_ARGS", "-DLLAVA_BUILD=OFF")}
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(staging),
                    f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "diskcache"], check=True, timeout=3600, env=env)
    staging.rename(target)
