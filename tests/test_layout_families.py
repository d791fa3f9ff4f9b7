"""Model-family knowledge stays in its family modules (`mcore_llama/families/`): no product file outside
them compares a `model_type` (parsed, not grepped: `config.get("model_type") != "llama"`,
`config["model_type"] == "qwen2"`, `model_type in ("llama", ...)`; SentencePiece's training algorithm, also
called `model_type`, is not a model family)."""

from __future__ import annotations

import ast
from pathlib import Path

from stagekit.paths import REPO

PRODUCT = ("corpus", "pipelines", "tokenizer", "checkpoints", "pretrain", "evaluation", "serving", "kocpt", "mcore_llama",
           "stagekit", "benchmarks")
FAMILY_MODULES = REPO / "mcore_llama" / "families"


def names_model_type(node: ast.AST) -> bool:
    """`model_type` (a name or attribute), `x["model_type"]` or `x.get("model_type")`."""
    if isinstance(node, ast.Attribute) and node.attr == "model_type":
        # a SentencePiece ModelProto's trainer_spec.model_type is its training algorithm, not a model family
        return not (isinstance(node.value, ast.Attribute) and node.value.attr == "trainer_spec")
    if isinstance(node, ast.Name) and node.id == "model_type":
        return True
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value == "model_type":
        return True
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
            and bool(node.args) and isinstance(node.args[0], ast.Constant) and node.args[0].value == "model_type")


# SentencePiece's own `model_type` (its training algorithm) is another thing of the same name.
SENTENCEPIECE_ALGORITHMS = {"bpe", "unigram", "char", "word"}


def constants(node: ast.AST) -> set:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def model_type_comparisons(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        sides = (node.left, *node.comparators) if isinstance(node, ast.Compare) else ()
        compared = set().union(*(constants(side) for side in sides if not names_model_type(side))) if sides else set()
        if any(names_model_type(side) for side in sides) and not (compared and compared <= SENTENCEPIECE_ALGORITHMS):
            found.append(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path.name}:{node.lineno}")
    return found


def test_model_type_is_compared_only_in_the_family_modules():
    offenders = [hit for folder in PRODUCT for path in sorted((REPO / folder).rglob("*.py"))
                 if not path.is_relative_to(FAMILY_MODULES) for hit in model_type_comparisons(path)]
    assert offenders == []


def test_the_guard_catches_every_spelling(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('if config.get("model_type") != "llama": pass\nok = config["model_type"] == "qwen2"\n'
                   'x = model_type in ("llama",)\ny = "llama" == self.model_type\nz = config.get("vocab_size") == 3\n'
                   'sp = self.model_type not in ("bpe", "unigram")\nproto.trainer_spec.model_type != BPE\n')
    assert [hit.split(":")[1] for hit in model_type_comparisons(bad)] == ["1", "2", "3", "4"]
    assert model_type_comparisons(FAMILY_MODULES / "__init__.py")  # the one place it lives
