"""The tokenizer family is decided in one place: tokenizer/family.py's `family_of` (parsed, not grepped).

Outside the family modules, product code must not call a family predicate of its own (`byte_level_json`,
`is_byte_level_dir`, ...) nor decide between the families by which file a directory holds: an `if` that
tests for one of `tokenizer.model` / `tokenizer.json` and handles the other in a branch, or one expression
that wants one file present and the other absent. Asking whether a directory holds either (a tokenizer at
all) is not a family decision.
"""

from __future__ import annotations

import ast

import pytest

from stagekit.paths import REPO

FAMILY_MODULES = {"tokenizer/family.py", "tokenizer/sentencepiece_family.py", "tokenizer/byte_level_family.py"}
# Benchmarks build tokenizer directories as fixtures (copy a tokenizer.model, write its tokenizer.json).
FOLDERS = ("corpus", "pipelines", "tokenizer", "checkpoints", "pretrain", "evaluation", "serving", "kocpt",
           "mcore_llama", "stagekit")
PREDICATES = {"byte_level_json", "is_byte_level_dir", "is_byte_level", "is_sentencepiece", "is_sentencepiece_dir"}
FILES = ("tokenizer.model", "tokenizer.json")
EXISTENCE = {"is_file", "exists", "is_dir", "isfile", "exists"}


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and n.value in FILES}


def _existence_checks(node: ast.AST) -> dict[str, set[bool]]:
    """File name -> polarities (True: wanted present, False: wanted absent) of existence calls under `node`."""
    found: dict[str, set[bool]] = {}

    def visit(n: ast.AST, present: bool) -> None:
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Not):
            visit(n.operand, not present)
            return
        if isinstance(n, ast.Call):
            name = n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
            if name in EXISTENCE:
                for file in _strings(n):
                    found.setdefault(file, set()).add(present)
        for child in ast.iter_child_nodes(n):
            visit(child, present)

    visit(node, True)
    return found


def family_decisions(source: str, where: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, where)):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in PREDICATES:
                found.append(f"{where}:{node.lineno}: calls {name}()")
        if isinstance(node, (ast.If, ast.IfExp)):
            tested = _existence_checks(node.test)
            if len(tested) == 1:
                (file,) = tested
                other = FILES[1 - FILES.index(file)]
                branches = [node.body, node.orelse] if isinstance(node.body, list) else [[node.body], [node.orelse]]
                if any(other in _strings(statement) for branch in branches for statement in branch):
                    found.append(f"{where}:{node.lineno}: tests for {file} and handles {other} in a branch")
        if isinstance(node, (ast.BoolOp, ast.Return, ast.If, ast.IfExp, ast.Assign)):
            tested = _existence_checks(node.test if isinstance(node, (ast.If, ast.IfExp)) else node)
            if len(tested) == 2 and {p for polarities in tested.values() for p in polarities} == {True, False}:
                found.append(f"{where}:{node.lineno}: wants one of {', '.join(FILES)} present and the other absent")
    return sorted(set(found))


def product_files():
    for folder in FOLDERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = str(path.relative_to(REPO))
            if relative not in FAMILY_MODULES:
                yield relative, path


def test_only_the_family_modules_decide_the_tokenizer_family():
    found = [line for relative, path in product_files()
             for line in family_decisions(path.read_text(encoding="utf-8"), relative)]
    assert found == []


def test_the_family_modules_exist_and_are_where_the_rule_says():
    assert all((REPO / name).is_file() for name in FAMILY_MODULES)
    assert "def family_of(" in (REPO / "tokenizer/family.py").read_text(encoding="utf-8")


@pytest.mark.parametrize(("source", "caught"), [
    # the shapes the family was decided in before tokenizer/family.py (gguf_export, gguf_check, token_encoder)
    ('if (m / "tokenizer.model").is_file():\n    a = 1\nelif (m / "tokenizer.json").is_file():\n    a = 2\n', True),
    ('if (m / "tokenizer.model").is_file():\n    a = 1\nelse:\n    a = load(m, "tokenizer.json")\n', True),
    ('def f(p):\n    return p.is_dir() and not (p / "tokenizer.model").is_file() and (p / "tokenizer.json").is_file()\n',
     True),
    ('x = read(p / "tokenizer.json") if not (p / "tokenizer.model").exists() else 0\n', True),
    ("if byte_level_json(base) is None:\n    pass\n", True),
    ("flag = checks.is_byte_level_dir(d)\n", True),
    # not family decisions: "holds a tokenizer at all", one family's own file
    ('if not (d / "tokenizer.model").is_file() and not (d / "tokenizer.json").is_file():\n    raise E()\n', False),
    ('ok = d.is_dir() and ((d / "tokenizer.model").is_file() or (d / "tokenizer.json").is_file())\n', False),
    ('if base is None and not (m / "tokenizer.model").is_file():\n    raise E("no tokenizer.model")\n', False),
    ('family = family_of(d)\nname = family.tokenizer_file(d).name\n', False),
])
def test_the_rule_catches_a_family_decision(source, caught):
    assert bool(family_decisions(source, "example.py")) is caught
