"""Running the corpus job in this process and reading what it wrote (the corpus door and incremental tests)."""

from __future__ import annotations

import json
from pathlib import Path

import zstandard

from pipelines.corpus import main as corpus_main
from stagekit.paths import KO_TRAIN


def run_corpus(*args) -> int:
    return corpus_main([*map(str, args)], prog="kocpt corpus")


def ko_lines(name: str, count: int, skip: int = 0) -> list[str]:
    with open(KO_TRAIN / name, encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    return lines[skip : skip + count]


def write_lines(path: Path, lines: list[str], encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def read_shards(output: Path, folder: str = "shards") -> list[dict]:
    return [
        json.loads(line)
        for path in sorted((output / folder).glob("*.zst"))
        for line in zstandard.ZstdDecompressor().stream_reader(path.open("rb")).read().decode("utf-8").splitlines()
    ]


def folder_bytes(output: Path) -> dict[str, bytes]:
    """Every output file but the manifest (which names the input paths and encodings)."""
    return {
        str(path.relative_to(output)): path.read_bytes()
        for path in sorted(output.rglob("*"))
        if path.is_file() and path.name != "manifest.json"
    }
