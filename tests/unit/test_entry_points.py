"""How stages and benchmarks start: every stage is `python -m package.module` (the dispatcher's table),
the user-facing script forms (`python tokenizer/merge.py`, `pretrain/launch.sh`) still work, product
code never edits `sys.path`, and no benchmark script is named like a package it would shadow."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from kocpt.cli import COMMANDS
from stagekit.paths import REPO

PRODUCT = ("corpus", "pipelines", "tokenizer", "checkpoints", "pretrain", "evaluation", "serving", "kocpt",
           "mcore_llama", "stagekit", "benchmarks")
PATH_MUTATORS = {"insert", "append", "extend", "remove", "pop", "clear"}


def stage_modules() -> list[str]:
    modules = []
    for entry in COMMANDS.values():
        modules.extend(module for module, _ in (entry.values() if isinstance(entry, dict) else [entry]))
    return modules


def is_sys_path(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "path"
            and isinstance(node.value, ast.Name) and node.value.id == "sys")


def sys_path_edits(source: str, filename: str = "<text>") -> list[int]:
    """Lines that change sys.path: a call of one of its mutating methods, or an assignment to it or a slice of it."""
    lines = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in PATH_MUTATORS \
                and is_sys_path(node.func.value):
            lines.append(node.lineno)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            if any(is_sys_path(t) or (isinstance(t, ast.Subscript) and is_sys_path(t.value)) for t in targets):
                lines.append(node.lineno)
    return lines


def test_product_code_never_edits_sys_path():
    found = [f"{path.relative_to(REPO)}:{line}" for folder in PRODUCT for path in sorted((REPO / folder).rglob("*.py"))
             for line in sys_path_edits(path.read_text(encoding="utf-8"), str(path))]
    assert found == []


@pytest.mark.parametrize("source", [
    "import sys\nsys.path.insert(0, 'x')\n",
    "import sys\nsys.path[0] = 'x'\n",
    "import sys\nsys.path[:] = []\n",
    "import sys\nsys.path += ['x']\n",
    "import sys\nif True:\n    sys.path.append('x')\n",
])
def test_the_sys_path_rule_catches_each_form(source):
    assert sys_path_edits(source) != []


def test_the_sys_path_rule_lets_reading_it_be():
    assert sys_path_edits("import sys\nprint(sys.path[0], len(sys.path))\nfirst = sys.path[:1]\n") == []


def test_no_benchmark_script_shadows_a_package():
    """`python benchmarks/corpus.py` would put benchmarks/ first on sys.path, where corpus.py hides the package."""
    shadowing = [path.name for path in (REPO / "benchmarks").glob("*.py")
                 if path.stem in PRODUCT or (REPO / path.stem).is_dir()]
    assert shadowing == []


def test_every_stage_module_is_a_file_of_its_package():
    missing = [module for module in stage_modules() if not (REPO / (module.replace(".", "/") + ".py")).is_file()]
    assert missing == []


@pytest.mark.slow
@pytest.mark.parametrize("module", stage_modules())
def test_every_stage_runs_as_a_module(module, tmp_path):
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage:")


@pytest.mark.slow
@pytest.mark.parametrize("script", ["tokenizer/merge.py", "tokenizer/train.py"])
def test_the_user_facing_script_forms_still_work(script, tmp_path):
    result = subprocess.run([sys.executable, str(REPO / script), "--help"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage:")
