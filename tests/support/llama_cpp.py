"""llama-cpp-python for the tests: from the environment, or built once from the pinned sdist into kocpt's
cache (under 2 minutes on two cores the first time).

Built here rather than by `pip install llama-cpp-python`: the tests load only libllama and its ggml
libraries, and pip's build also compiles llama.cpp's `common` library (forced on by llama-cpp-python's
CMakeLists) and more. Measured on this machine's 2 cores: pip's build ~250 s and ~8 CPU-minutes, this one
~105 s (download included) and ~3 CPU-minutes, on every clean CI machine. The Python package is the sdist's
own `llama_cpp/`, unchanged; it finds the libraries in `llama_cpp/lib`, as in a wheel.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from serving.gguf_export import LLAMA_CPP_PYTHON, llama_cpp_sdist, unpack_llama_cpp_sdist
from stagekit.wheels import cache_dir, cache_lock

# The Python package, and what llama.cpp needs to build libllama (its docs, models, tools and tests stay packed).
_SOURCES = ["llama_cpp/", *(f"vendor/llama.cpp/{path}" for path in
                            ("CMakeLists.txt", "cmake/", "common/", "ggml/", "include/", "src/", "vendor/", "LICENSE"))]


def ensure_llama_cpp() -> None:
    """Import llama_cpp from the environment, or from the cached build of the pinned release."""
    if importlib.util.find_spec("llama_cpp"):
        return
    target = cache_dir() / f"llama-cpp-python-{LLAMA_CPP_PYTHON}-py{sys.version_info[0]}{sys.version_info[1]}"
    with cache_lock(target.parent, target.name):  # test workers may start it together
        if not (target / "llama_cpp").is_dir():
            _build(target)
    sys.path.insert(0, str(target))


def _build(target: Path) -> None:
    """Into a staging folder, then rename: a killed build leaves no half-built import."""
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    print(f"building llama-cpp-python {LLAMA_CPP_PYTHON}'s libllama for the tests (once; cached in {target})", flush=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".llama-cpp-build-") as tmp:
        sources = unpack_llama_cpp_sdist(llama_cpp_sdist(Path(tmp)), Path(tmp) / "src", _SOURCES)
        build = Path(tmp) / "build"
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        # Shared libraries that find each other beside themselves ($ORIGIN), as llama-cpp-python's wheel has them.
        _run(["cmake", "-S", str(sources / "vendor" / "llama.cpp"), "-B", str(build), *generator,
              "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=ON", "-DLLAMA_CURL=OFF",
              *(f"-DLLAMA_BUILD_{part}=OFF" for part in ("COMMON", "TESTS", "TOOLS", "EXAMPLES", "SERVER", "APP")),
              "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON", "-DCMAKE_INSTALL_RPATH=$ORIGIN",
              *shlex.split(os.environ.get("CMAKE_ARGS", ""))],
             timeout=600)
        _run(["cmake", "--build", str(build), "--target", "llama", "--parallel", str(os.cpu_count() or 1)], timeout=3600)
        shutil.copytree(sources / "llama_cpp", staging / "llama_cpp")
        libraries = staging / "llama_cpp" / "lib"
        libraries.mkdir()
        for library in (build / "bin").glob("lib*.so*"):
            shutil.copy2(library, libraries / library.name, follow_symlinks=False)
    # diskcache: llama_cpp imports it; numpy, jinja2 and typing-extensions come from the environment.
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(staging), "diskcache"],
                   check=True, timeout=600)
    staging.rename(target)


def _run(command: list[str], timeout: int) -> None:
    """A build step, quiet unless it fails (then its output's end)."""
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{result.stdout[-4000:]}")

