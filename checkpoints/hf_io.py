"""Hugging Face model directories, written one tensor at a time.

`write_safetensors_shards` writes sharded safetensors plus `model.safetensors.index.json`
from a list of (name, shape, dtype) and a function that makes each tensor when its turn comes, so
only one tensor is materialized at a time. It writes the safetensors layout itself (8-byte header
length, JSON header, raw little-endian data) because `safetensors.torch.save_file` needs every
tensor of a file in memory at once; files are read back with `safe_open` in the tests. Reading is
`mcore_llama.hf_checkpoint.HFCheckpoint`.

Directories are written under a temporary name beside the target and renamed when complete.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from mcore_llama.hf_checkpoint import SAFETENSORS_DTYPES, SAFETENSORS_INDEX
from stagekit.errors import BadInput
from stagekit.outputs import MARKER


def write_safetensors_shards(
    out_dir: Path,
    specs: list[tuple[str, tuple[int, ...], torch.dtype]],
    make_tensor: Callable[[str], torch.Tensor],
    max_shard_bytes: int = 2 * 1024**3,
    progress: str | None = None,
) -> dict:
    """Write tensors as HF-style sharded safetensors; `make_tensor(name)` is called in order."""
    shards: list[list[tuple[str, tuple[int, ...], torch.dtype]]] = [[]]
    size = 0
    for spec in specs:
        nbytes = math.prod(spec[1]) * spec[2].itemsize
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += nbytes
    n = len(shards)
    names = ["model.safetensors"] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    weight_map: dict[str, str] = {}
    total = 0
    bar = tqdm(total=len(specs), desc=progress, unit="tensor", disable=progress is None, file=sys.stderr)
    for file_name, shard in zip(names, shards):
        header: dict = {"__metadata__": {"format": "pt"}}
        offset = 0
        for name, shape, dtype in shard:
            nbytes = math.prod(shape) * dtype.itemsize
            header[name] = {"dtype": SAFETENSORS_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
        header_bytes = json.dumps(header, separators=(",", ":")).encode()
        header_bytes += b" " * (-len(header_bytes) % 8)
        with open(out_dir / file_name, "wb") as f:
            f.write(len(header_bytes).to_bytes(8, "little"))
            f.write(header_bytes)
            for name, shape, dtype in shard:
                tensor = make_tensor(name)
                if tuple(tensor.shape) != tuple(shape) or tensor.dtype != dtype:
                    raise ValueError(f"{name}: made {tuple(tensor.shape)} {tensor.dtype}, planned {shape} {dtype}")
                # The raw bytes, without a copy when the tensor is already contiguous.
                f.write(memoryview(tensor.contiguous().view(-1).view(torch.uint8).numpy()))
                weight_map[name] = file_name
                del tensor
                bar.update()
        total += offset
    bar.close()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    if n > 1:
        (out_dir / SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return index


def overwrite_tensor(model_dir: Path, name: str, tensor: torch.Tensor) -> None:
    """Write `tensor` over the bytes of the tensor `name` in a directory `write_safetensors_shards` wrote
    (same shape and dtype): one tensor changes, nothing else is read or rewritten."""
    model_dir = Path(model_dir)
    index = model_dir / SAFETENSORS_INDEX
    file_name = json.loads(index.read_text())["weight_map"][name] if index.is_file() else "model.safetensors"
    with open(model_dir / file_name, "r+b") as f:
        header_length = int.from_bytes(f.read(8), "little")
        entry = json.loads(f.read(header_length))[name]
        start, stop = entry["data_offsets"]
        if entry["shape"] != list(tensor.shape) or entry["dtype"] != SAFETENSORS_DTYPES[tensor.dtype] \
                or stop - start != tensor.numel() * tensor.dtype.itemsize:
            raise ValueError(f"{name}: stored {entry['shape']} {entry['dtype']}, given {list(tensor.shape)} {tensor.dtype}")
        f.seek(8 + header_length + start)
        f.write(memoryview(tensor.contiguous().view(-1).view(torch.uint8).numpy()))


def copy_tokenizer_files(tokenizer_dir: Path, out_dir: Path) -> list[str]:
    """Copy a tokenizer directory's files (tokenizer.model/json, configs, LICENSE...) beside a model."""
    tokenizer_dir = Path(tokenizer_dir)
    if not (tokenizer_dir / "tokenizer.model").is_file() and not (tokenizer_dir / "tokenizer.json").is_file():
        raise BadInput(f"{tokenizer_dir}: no tokenizer.model or tokenizer.json (not a tokenizer directory)")
    copied = []
    for path in sorted(tokenizer_dir.iterdir()):
        if path.is_file() and not path.name.endswith(".safetensors") and path.name not in (
            "config.json", SAFETENSORS_INDEX, "generation_config.json", MARKER,  # the model dir has its own marker
        ):
            shutil.copy2(path, out_dir / path.name)
            copied.append(path.name)
    return copied


def peak_rss_bytes() -> int:
    """This process's peak resident set size.

    Linux's VmHWM (per address space) when available: `getrusage` would also count the parent's
    resident set inherited at fork, which is wrong for a command started by a large process.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
