"""A Hugging Face Llama directory, read one tensor (or one tensor-parallel slice) at a time.

`HFCheckpoint` opens safetensors lazily (`safe_open`) for every read and closes it again, so pages
of the memory-mapped file do not pile up in the process's resident set; a read can be a row/column
slice (`get_slice`), which is how a tensor-parallel rank reads only its shard. Pickled `*.bin`
weights are refused (they can run code on load).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from stagekit.errors import BadInput

SAFETENSORS_INDEX = "model.safetensors.index.json"
SAFETENSORS_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.uint8: "U8",
}
TORCH_DTYPES = {v: k for k, v in SAFETENSORS_DTYPES.items()}
DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def dtype_from_name(name: str) -> torch.dtype:
    for dtype, dtype_name in DTYPE_NAMES.items():
        if dtype_name == name:
            return dtype
    raise BadInput(f"unsupported dtype {name!r} (expected one of {sorted(DTYPE_NAMES.values())})")


@dataclass(frozen=True)
class TensorInfo:
    file: Path
    shape: tuple[int, ...]
    dtype: torch.dtype


class HFCheckpoint:
    """A Hugging Face Llama directory: config.json + safetensors (single or sharded)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise BadInput(f"{self.path}: not a directory")
        config_path = self.path / "config.json"
        if not config_path.is_file():
            raise BadInput(f"{self.path}: no config.json (not a Hugging Face model directory)")
        try:
            self.config = json.loads(config_path.read_text())
        except json.JSONDecodeError as exc:
            raise BadInput(f"{config_path}: not valid JSON ({exc})") from None
        files = self._weight_files()
        self.tensors: dict[str, TensorInfo] = {}
        for file in files:
            try:
                with safe_open(file, framework="pt") as f:
                    for name in f.keys():
                        sl = f.get_slice(name)
                        self.tensors[name] = TensorInfo(
                            file, tuple(sl.get_shape()), TORCH_DTYPES[sl.get_dtype()]
                        )
            except Exception as exc:  # safetensors raises its own SafetensorError
                if isinstance(exc, BadInput):
                    raise
                raise BadInput(f"{file}: not a readable safetensors file ({exc})") from None

    def _weight_files(self) -> list[Path]:
        index = self.path / SAFETENSORS_INDEX
        if index.is_file():
            weight_map = json.loads(index.read_text()).get("weight_map", {})
            files = sorted({self.path / f for f in weight_map.values()})
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise BadInput(f"{index}: lists missing files {missing[:3]}")
            return files
        files = sorted(self.path.glob("*.safetensors"))
        if files:
            return files
        if list(self.path.glob("*.bin")) or list(self.path.glob("*.pt")):
            raise BadInput(
                f"{self.path}: only pickle weights (*.bin); convert them to safetensors first "
                "(pickles can run code on load, so they are not read here)"
            )
        raise BadInput(f"{self.path}: no *.safetensors weights")

    @property
    def model_bytes(self) -> int:
        return sum(t.dtype.itemsize * math.prod(t.shape) for t in self.tensors.values())

    def info(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise BadInput(f"{self.path}: tensor {name} is missing") from None

    def read(self, name: str) -> torch.Tensor:
        with safe_open(self.info(name).file, framework="pt") as f:
            return f.get_tensor(name)

    def read_rows(self, name: str, start: int, stop: int, cols: tuple[slice, ...] = ()) -> torch.Tensor:
        """Rows [start, stop) of `name`, restricted to `cols` on the following dims."""
        with safe_open(self.info(name).file, framework="pt") as f:
            return f.get_slice(name)[(slice(start, stop), *cols)]


RESIZE_REPORT = "resize_report.json"  # written by `kocpt checkpoints resize` into the model it writes


def resized_base_rows(hf_dir: str | Path) -> int | None:
    """Rows a resized model kept from its base (what a new-rows-only stage freezes), from the directory's
    resize_report.json; None when the model was not resized here. Reports older than `base_vocab_size`
    copied every old row, `old_vocab_size`."""
    path = Path(hf_dir) / RESIZE_REPORT
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text())
        rows = report.get("base_vocab_size", report.get("old_vocab_size"))
        return int(rows) if rows is not None else None
    except (json.JSONDecodeError, TypeError, ValueError, AttributeError):
        raise BadInput(f"{path}: malformed (no readable base_vocab_size)") from None
