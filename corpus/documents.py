"""Reading documents for a stage that scores or fits on text: one reader for every format the project
writes or takes (plain text one document per line, JSONL with a "text" field, corpus shards).
Used by evaluation (held-out text) and by checkpoints (the LM-head calibration text)."""

from __future__ import annotations

import json
from pathlib import Path

from corpus.shards import ShardError, iter_documents
from stagekit.errors import BadInput


def read_documents(path: str | Path, max_documents: int | None = None, what: str = "evaluation text") -> list[str]:
    """Documents from a text file (one per line), JSONL with a "text" field, or corpus shards (.jsonl.zst,
    or a corpus output folder); `what` names the file in errors ("evaluation text", "calibration text")."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: {what} not found")
    documents: list[str] = []
    try:
        if path.is_dir() or path.name.endswith(".jsonl.zst"):
            try:
                for record in iter_documents(path):
                    documents.append(record["text"])
                    if max_documents and len(documents) >= max_documents:
                        break
            except ShardError as exc:
                raise BadInput(f"{path}: {exc}") from None
        else:
            with open(path, encoding="utf-8") as handle:
                jsonl = path.suffix == ".jsonl"
                for number, line in enumerate(handle, 1):
                    line = line.rstrip("\n")
                    if not line.strip():
                        continue
                    if jsonl:
                        try:
                            line = json.loads(line)["text"]
                        except (json.JSONDecodeError, KeyError, TypeError):
                            raise BadInput(f"{path}:{number}: not a JSON object with a \"text\" field") from None
                    documents.append(line)
                    if max_documents and len(documents) >= max_documents:
                        break
    except UnicodeDecodeError:
        raise BadInput(f"{path}: the {what} is not UTF-8 text") from None
    if not documents:
        raise BadInput(f"{path}: the {what} holds no documents")
    return documents
