"""Reading the corpus stage's output: `shards/part-NNNNN-of-MMMMM.jsonl.zst` + `manifest.json`.

Later stages (tokenizer training, indexed-dataset tokenization) read documents through here so that
the shard format lives in one place.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import zstandard

from corpus.records import BadFile, decompressed

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
            for line in decompressed(raw, str(path)):
                if line.strip():
                    yield json.loads(line)
    except BadFile as exc:
        raise ShardError(str(exc)) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
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


def shard_name(index: int, count: int) -> str:
    return f"part-{index:05d}-of-{count:05d}.jsonl.zst"


def shard_of(key: str, count: int) -> int:
    """Stable shard index of a document id (the same on every run, machine and Python)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % count


def encode_shard(records: list[dict], level: int) -> bytes:
    """Records (already sorted) as one zstd frame of JSONL; identical input gives identical bytes."""
    payload = "".join(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n" for record in records)
    return zstandard.ZstdCompressor(level=level, write_checksum=True).compress(payload.encode("utf-8"))


def shard_entry(name: str, records: int, data: bytes) -> dict:
    """A manifest entry for one written shard."""
    return {"file": name, "documents": records, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_shards(corpus: str | Path) -> list[Path]:
    """The shards a finished corpus output's `manifest.json` names, each checked against it.

    Every shard must be present with the size and sha256 the manifest records; otherwise (or
    without a manifest, which an unfinished or interrupted corpus run never has) ShardError says
    which file and what is wrong. Sorted by name.
    """
    corpus = Path(corpus)
    if not corpus.exists():
        raise ShardError(f"{corpus}: no such file or directory")
    if not corpus.is_dir():
        raise ShardError(f"{corpus}: not a corpus output directory (expected a folder with manifest.json and shards/)")
    manifest_path = corpus / "manifest.json"
    if not manifest_path.is_file():
        raise ShardError(f"{corpus}: no manifest.json (not a finished corpus output; rerun the corpus stage)")
    try:
        entries = json.loads(manifest_path.read_text(encoding="utf-8"))["shards"]
        checks = [(entry["file"], int(entry["bytes"]), str(entry["sha256"])) for entry in entries]
    except (ValueError, KeyError, TypeError) as exc:
        raise ShardError(f"{manifest_path}: not a corpus manifest (no shards with file, bytes and sha256: {exc})") from None
    if not checks:
        raise ShardError(f"{manifest_path}: lists no shards")
    shards = []
    for name, size, sha256 in sorted(checks):
        path = corpus / name
        if not path.is_file():
            raise ShardError(f"{path}: shard named in {manifest_path.name} is missing")
        if path.stat().st_size != size:
            raise ShardError(f"{path}: shard changed since the corpus was written ({path.stat().st_size} bytes, manifest says {size})")
        if _sha256_of(path) != sha256:
            raise ShardError(f"{path}: shard changed since the corpus was written (sha256 differs from {manifest_path.name})")
        shards.append(path)
    return shards


def write_texts_as_corpus(directory: str | Path, texts: list[str], num_shards: int, source: str = "texts") -> list[list[dict]]:
    """Plain texts in the corpus stage's output layout (DIR/shards/part-NNNNN-of-MMMMM.jsonl.zst and
    a manifest with sizes and sha256), documents dealt round-robin: for benchmarks and tests that
    need a corpus without running the Beam job. Returns the documents of each shard."""
    directory = Path(directory)
    shards_dir = directory / "shards"
    shards_dir.mkdir(parents=True, exist_ok=True)
    per_shard: list[list[dict]] = [[] for _ in range(num_shards)]
    for index, text in enumerate(texts):
        per_shard[index % num_shards].append({"id": f"{source}:{index:08d}", "text": text, "source": source, "meta": {}})
    entries = []
    for number, docs in enumerate(per_shard):
        docs.sort(key=lambda d: d["id"])
        name = shard_name(number, num_shards)
        data = encode_shard(docs, level=3)
        (shards_dir / name).write_bytes(data)
        entries.append(shard_entry(f"shards/{name}", len(docs), data))
    (directory / "manifest.json").write_text(json.dumps({"shards": entries}))
    return per_shard

