"""Reading the corpus stage's output: `shards/part-NNNNN-of-MMMMM.jsonl.zst` + `manifest.json`.

Later stages (tokenizer training, indexed-dataset tokenization) read documents through here so that
the shard format lives in one place.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import zstandard

SHARD_GLOB = "part-*-of-*.jsonl.zst"


class ShardError(ValueError):
    """A shard or corpus directory that cannot be read; the message names the file."""


def shard_paths(path: str | Path) -> list[Path]:
    """The shard files of a corpus output directory, its `shards/` folder, or one shard file.

    Sorted by name, so every reader sees documents in the same order.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.exists():
        raise ShardError(f"{path}: no such file or directory")
    folder = path / "shards" if (path / "shards").is_dir() else path
    found = sorted(folder.glob(SHARD_GLOB))
    if not found:
        found = sorted(folder.glob("*.jsonl.zst"))
    if not found:
        raise ShardError(f"{path}: no corpus shards (*.jsonl.zst) found")
    return found


def read_shard(path: str | Path) -> Iterator[dict]:
    """Documents of one `.jsonl.zst` shard, in file order. A corrupt shard raises ShardError."""
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
            text = io.TextIOWrapper(reader, encoding="utf-8")
            for line_number, line in enumerate(text, 1):
                if line.strip():
                    yield json.loads(line)
    except (zstandard.ZstdError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ShardError(f"{path}: unreadable shard ({exc})") from None
    except OSError as exc:
        raise ShardError(f"{path}: {exc.strerror or exc}") from None


def iter_documents(paths: str | Path | list[str | Path]) -> Iterator[dict]:
    """Documents of every shard under `paths` (directories or shard files), shard by shard."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    for path in paths:
        for shard in shard_paths(path):
            yield from read_shard(shard)
