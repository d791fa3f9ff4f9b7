"""The folder story of DESIGN.md, checked on the imports themselves (parsed, not grepped).

`checkpoints/` and `pretrain/` both build on `mcore_llama/` and never import each other; nothing
outside `tests/` imports from `tests/`; no stage imports the `kocpt` dispatcher; `corpus/` holds
pure functions (no Beam); `mcore_llama/` depends on no stage.
"""

from __future__ import annotations

import ast
import importlib

import pytest

from stagekit.paths import REPO

PRODUCT = ("corpus", "pipelines", "tokenizer", "checkpoints", "pretrain", "evaluation", "serving", "kocpt", "mcore_llama", "stagekit", "benchmarks")
STAGES = ("corpus", "pipelines", "tokenizer", "checkpoints", "pretrain", "evaluation", "serving", "mcore_llama", "stagekit")


def imported_modules(path) -> set[str]:
    """Every module an `import` or `from ... import` names in a file (top level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def imports_by_folder() -> dict[str, dict[str, set[str]]]:
    table = {}
    for folder in PRODUCT:
        for path in sorted((REPO / folder).rglob("*.py")):
            table.setdefault(folder, {})[str(path.relative_to(REPO))] = imported_modules(path)
    return table


def offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for file, modules in imports_by_folder()[folder].items():
        for module in sorted(modules):
            if module.split(".")[0] in forbidden:
                found.append(f"{file} imports {module}")
    return found


@pytest.mark.parametrize(("folder", "forbidden"), [
    ("checkpoints", ("pretrain",)),
    ("pretrain", ("checkpoints",)),
    ("mcore_llama", ("checkpoints", "pretrain", "corpus", "pipelines", "tokenizer", "evaluation", "kocpt")),
    ("stagekit", ("checkpoints", "pretrain", "corpus", "pipelines", "tokenizer", "evaluation", "kocpt", "mcore_llama")),
    ("corpus", ("apache_beam", "pipelines")),
])
def test_folder_does_not_import(folder, forbidden):
    assert offenders(folder, forbidden) == []


@pytest.mark.parametrize("folder", PRODUCT)
def test_nothing_outside_tests_imports_tests(folder):
    assert offenders(folder, ("tests",)) == []


@pytest.mark.parametrize("folder", STAGES)
def test_no_stage_imports_the_dispatcher(folder):
    assert offenders(folder, ("kocpt",)) == []


# What each stage may build on: shared packages (stagekit, mcore_llama), the pure document
# functions (corpus) and the tokenizer contract (tokenizer: its files, its encoder). Stages never
# import each other otherwise; only the dispatcher (kocpt) and benchmarks combine them.
MAY_IMPORT = {
    "stagekit": (),
    "corpus": ("stagekit",),
    "mcore_llama": ("stagekit",),
    "tokenizer": ("stagekit", "corpus"),
    "pipelines": ("stagekit", "corpus", "tokenizer"),
    "checkpoints": ("stagekit", "mcore_llama", "corpus", "tokenizer"),
    "pretrain": ("stagekit", "mcore_llama", "tokenizer"),
    "evaluation": ("stagekit", "corpus", "tokenizer"),
    "serving": ("stagekit", "mcore_llama", "tokenizer"),
}


@pytest.mark.parametrize("folder", STAGES)
def test_stages_build_only_on_shared_packages(folder):
    others = tuple(name for name in PRODUCT if name not in (folder, *MAY_IMPORT[folder]))
    assert offenders(folder, others) == []


def module_name(path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_cycles() -> list[list[str]]:
    """Cycles in the graph of product modules importing product modules (any import, even in a function)."""
    files = {module_name(path): path for folder in PRODUCT for path in (REPO / folder).rglob("*.py")}
    graph = {}
    for module, path in files.items():
        targets = set()
        for name in imported_modules(path):
            while name and name not in files:  # `from a.b import c`: the module a.b (or package a)
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):
                targets.add(name)
        graph[module] = targets
    cycles, state = [], {}

    def visit(module, stack):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, [*stack, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_no_module_imports_itself_through_others():
    assert import_cycles() == []


def test_the_rule_catches_a_cross_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from pretrain.resolve import TrainingRun\n    import checkpoints.convert\n")
    assert imported_modules(bad) == {"pretrain.resolve", "checkpoints.convert"}


def test_megatron_internals_patched_by_the_cpu_shim_still_exist():
    """The shim replaces private Megatron-Core names; an upgrade that renames one must fail here."""
    from mcore_llama.runtime import PATCHED_MEGATRON_NAMES

    missing = [f"{module}.{name}" for module, name in PATCHED_MEGATRON_NAMES
               if not hasattr(importlib.import_module(module), name)]
    assert missing == []


def test_no_product_file_is_over_400_lines():
    long = [f"{path.relative_to(REPO)}: {n} lines" for folder in PRODUCT if folder != "benchmarks"
            for path in (REPO / folder).rglob("*.py")
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 400]
    assert long == []
