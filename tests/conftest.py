"""Shared test fixtures: paths to the real data in ../shared/data and the repo's own test data; the
offline switch; the fast tier's guard.

Tiers: a test not marked `slow` is in the fast tier (`make test-fast`, `pytest -m "not slow"`), which
is hermetic: no subprocess (so no Beam job, Megatron process, llama.cpp build or pip download) and
no network. `slow` tests are the integration and end-to-end tiers; `network` marks the few that may
fetch a pinned wheel from PyPI when it is not cached. `make test` (CI) runs every tier.
"""

from __future__ import annotations

import contextlib
import multiprocessing.process
import os
import subprocess
from pathlib import Path

import pytest

# No hub access anywhere (set before transformers/datasets/lm-eval are imported by any test module).
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_name] = "1"

from stagekit.paths import DEMO_CORPUS, LLAMA2_TOKENIZER, REPO, SHARED_DATA  # noqa: F401  (shared test paths)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"{SHARED_DATA} is missing: tests need ../shared/data beside the repository")
    return SHARED_DATA


def pytest_collection_modifyitems(items):
    for item in items:  # what may download is not hermetic: never in the fast tier
        if item.get_closest_marker("network") and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def dead_pid() -> int:
    """A pid no process has now, nor the next one (for the leftovers of killed runs)."""
    pid = int(Path("/proc/sys/kernel/pid_max").read_text()) - 2
    while Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid + 1}").exists():
        pid -= 2
    return pid


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    with _hermetic_unless_slow(item):  # fixtures included, whatever their scope
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    with _hermetic_unless_slow(item):
        return (yield)


@contextlib.contextmanager
def _hermetic_unless_slow(item):
    """A fast-tier test (or a fixture it sets up) that starts a process fails, naming the fix. The
    process is let run (refusing it would leave Beam's runner waiting forever), then the test fails."""
    if item.get_closest_marker("slow"):
        yield
        return
    started = []
    popen_init, process_start = subprocess.Popen.__init__, multiprocessing.process.BaseProcess.start

    def record_popen(self, args, *rest, **kwargs):
        started.append(str(args)[:80])
        popen_init(self, args, *rest, **kwargs)

    def record_start(self):
        started.append(f"multiprocessing {self.name}")
        process_start(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "__init__", record_popen)
        patch.setattr(multiprocessing.process.BaseProcess, "start", record_start)
        yield
    if started:
        raise AssertionError(f"{item.nodeid} started {len(started)} process(es) in the fast tier "
                             f"(first: {started[0]}): mark it @pytest.mark.slow")


@pytest.fixture(scope="session")
def llama_cpp_python() -> None:
    """llama_cpp importable: from the environment, or from a cached `pip install --target` of the pinned release
    (the same cache as tests/test_gguf_export.py's ensure_llama_cpp, which the tier sorting can fold into this)."""
    import importlib.util
    import shutil
    import sys

    from serving.gguf_export import LLAMA_CPP_PYTHON, cache_dir

    if importlib.util.find_spec("llama_cpp"):
        return
    target = cache_dir() / f"llama-cpp-python-{LLAMA_CPP_PYTHON}-py{sys.version_info[0]}{sys.version_info[1]}"
    if not (target / "llama_cpp").is_dir():
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(staging),
                        f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "diskcache"], check=True, timeout=3600)
        staging.rename(target)
    sys.path.insert(0, str(target))
