"""Shared test fixtures and the tiers.

Tiers are folders: tests/unit (hermetic: no subprocess, Beam worker, Megatron process, llama.cpp build,
download or network), tests/integration (one stage as users run it: processes, Beam jobs, llama.cpp)
and tests/e2e (stages chained). Every test under integration/ and e2e/ is marked `slow` (and with its
tier) here; a unit test may be `slow` too (hermetic but long). `make test-fast` runs `-m "not slow"`
(minutes), `make test` (CI) every tier. A fast test that starts a process fails (the guard below);
`network` marks tests that may fetch a pinned wheel when it is not cached (always slow).

Fixtures used by more than one tier live here; a tier's own in its conftest.py; plain helpers the tests
call in tests/support/. No test module imports another.
"""

from __future__ import annotations

import contextlib
import multiprocessing.process
import os
import subprocess
from pathlib import Path

import pytest

from stagekit.paths import SHARED_DATA

TIERS = {"unit": "unit", "integration": "integration", "e2e": "e2e"}  # folder -> marker
OFFLINE = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def pytest_configure(config):
    """The one offline switch: no hub access anywhere. Set before any test module is imported (collection),
    since transformers, datasets and lm-eval read it at import."""
    for name in OFFLINE:
        os.environ[name] = "1"
    # A pytest-xdist worker shares the cores with the others: its share of threads (torch's, and the
    # processes it starts), unless the caller chose; `-n0` keeps torch's default (every core).
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // workers))
    # matplotlib builds its font cache on first use by running fc-list: once per machine, here, not inside
    # whichever fast-tier test plots first (which the hermetic guard below would fail on a fresh machine).
    import matplotlib.font_manager  # noqa: F401


def pytest_collection_modifyitems(items):
    for item in items:
        tier = next((TIERS[part] for part in Path(item.path).parts if part in TIERS), None)
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))
        # Beyond the unit tier, and whatever may download: not hermetic, never in the fast tier.
        if tier in ("integration", "e2e") or item.get_closest_marker("network"):
            if not item.get_closest_marker("slow"):
                item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"{SHARED_DATA} is missing: tests need ../shared/data beside the repository")
    return SHARED_DATA


@pytest.fixture
def dead_pid() -> int:
    """A pid no process has now, nor the next one (for the leftovers of killed runs)."""
    pid = int(Path("/proc/sys/kernel/pid_max").read_text()) - 2
    while Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid + 1}").exists():
        pid -= 2
    return pid


@pytest.fixture(scope="session")
def llama2_tokenizer_dir(tmp_path_factory, shared_data) -> Path:
    """The real Llama-2 tokenizer as a Hugging Face directory (tokenizer.model + tokenizer.json + config)."""
    from tests.support.models import write_llama2_hf_tokenizer

    return write_llama2_hf_tokenizer(tmp_path_factory.mktemp("llama2-tokenizer"))


@pytest.fixture(scope="session")
def exported_model_dir(tmp_path_factory, llama2_tokenizer_dir) -> Path:
    """A tiny random Llama with Llama-2's vocabulary, saved as `kocpt checkpoints convert --to hf` would."""
    from tests.support.models import write_exported_model

    return write_exported_model(tmp_path_factory.mktemp("exported"), llama2_tokenizer_dir)


@pytest.fixture(scope="session")
def llama_cpp_python() -> None:
    """llama_cpp importable (tests/support/llama_cpp.py: the environment's, or the pinned release built once)."""
    from tests.support.llama_cpp import ensure_llama_cpp

    ensure_llama_cpp()


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
