"""Reading .safetensors files safely: validate the header completely before anything is allocated.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON (tensor name → dtype, shape,
data_offsets relative to the end of the header; optional ``__metadata__`` string map), then the tensor bytes.
Files come from the internet, so every number in the header is checked against the file itself before we trust it:
a hostile length (10 GB), offsets that overlap, leave holes or point past the end, or a byte count that disagrees
with dtype × shape all raise ``FormatError`` naming the file. Only then is the data read, through safetensors' own
reader (which mmaps the file).
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import torch

from loradeck.errors import FormatError
from loradeck.formats import json_safe

MAX_HEADER_BYTES = 100 * 1024 * 1024  # 100 MB: real headers are a few hundred KB even for 2 000-tensor checkpoints
# An SDXL checkpoint has ~2 500 tensors, a full-coverage LyCORIS file ~6 000: 50 000 leaves room and keeps parsing,
# validating and grouping a hostile header well under a second.
MAX_TENSORS = 50_000
MAX_DIMS = 8  # no model weight has more than 5
HEADER_DEPTH = 3  # {name: {"shape": [..]}}: anything deeper is not a safetensors header

# Bytes per element of every dtype safetensors writes.
DTYPE_SIZES: dict[str, int] = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor entry of a header; ``start``/``end`` are absolute byte offsets in the file."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class SafetensorsHeader:
    """The validated header of a .safetensors file."""

    metadata: dict[str, str] = field(default_factory=dict)
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    data_start: int = 8


def read_header(path: str | os.PathLike) -> SafetensorsHeader:
    """Read and fully validate the header of ``path``; raise FormatError on anything inconsistent."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise FormatError(path, f"file is {size} bytes, too short to be a safetensors file")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES:
                raise FormatError(
                    path, f"safetensors header claims {n} bytes, more than the {MAX_HEADER_BYTES} allowed"
                )
            if n > size - 8:
                raise FormatError(
                    path, f"safetensors header claims {n} bytes but the file has only {size - 8} after it"
                )
            raw = f.read(n)
    except OSError as e:
        raise FormatError(path, f"cannot be read ({e.strerror or e})") from e
    # Counting the entries in the raw bytes first refuses a 300 000-tensor header before any JSON is built.
    entries = raw.count(b'"data_offsets"')
    if entries > MAX_TENSORS:
        raise FormatError(path, f"safetensors header lists {entries} tensors, more than the {MAX_TENSORS} allowed")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(path, f"safetensors header is not UTF-8 text (byte {e.start})") from None
    doc = json_safe.loads(text, path, "safetensors header", max_depth=HEADER_DEPTH)
    return _parse_header(path, doc, data_start=8 + n, file_size=size)


def _parse_header(path: Path, doc: object, data_start: int, file_size: int) -> SafetensorsHeader:
    if not isinstance(doc, dict):
        raise FormatError(path, "safetensors header is not a JSON object")
    metadata = doc.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise FormatError(path, "safetensors __metadata__ is not a map of strings")
    if len(doc) > MAX_TENSORS + 1:
        raise FormatError(path, f"safetensors header lists {len(doc) - 1} tensors, more than the {MAX_TENSORS} allowed")
    tensors: dict[str, TensorInfo] = {}
    for name, entry in doc.items():
        if name == "__metadata__":
            continue
        tensors[name] = _parse_entry(path, name, entry, data_start, file_size)
    _check_layout(path, tensors, data_start, file_size)
    return SafetensorsHeader(metadata=dict(metadata), tensors=tensors, data_start=data_start)


def _parse_entry(path: Path, name: str, entry: object, data_start: int, file_size: int) -> TensorInfo:
    if not isinstance(entry, dict):
        raise FormatError(path, f"tensor {_short(name)} has no dtype/shape/offsets entry")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_SIZES:
        raise FormatError(path, f"tensor {_short(name)} has unknown dtype {_short(dtype)}")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise FormatError(path, f"tensor {_short(name)} has an invalid shape {_short(shape)}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise FormatError(path, f"tensor {_short(name)} has invalid data_offsets {_short(offsets)}")
    if offsets[1] > file_size - data_start:
        raise FormatError(
            path, f"tensor {_short(name)} ends past the end of the file (the file is truncated or the offsets lie)"
        )
    nbytes = math.prod(shape) * DTYPE_SIZES[dtype]
    if offsets[1] - offsets[0] != nbytes:
        raise FormatError(
            path,
            f"tensor {_short(name)} spans {offsets[1] - offsets[0]} bytes but {dtype}×{_short(tuple(shape))} needs {_short(nbytes)}",
        )
    return TensorInfo(dtype=dtype, shape=tuple(shape), start=data_start + offsets[0], end=data_start + offsets[1])


def _short(value: object, limit: int = 80) -> str:
    """repr() cut to ``limit`` characters: names and shapes come from the file and may be megabytes long."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_layout(path: Path, tensors: dict[str, TensorInfo], data_start: int, file_size: int) -> None:
    """Tensors must tile the data section exactly: no overlap, no hole, nothing past the end, nothing missing."""
    cursor = data_start
    for name, info in sorted(tensors.items(), key=lambda kv: (kv[1].start, kv[1].end)):
        if info.start < cursor:
            raise FormatError(path, f"tensor {_short(name)} overlaps the tensor before it")
        if info.start > cursor:
            raise FormatError(path, f"tensor {_short(name)} leaves a gap of {info.start - cursor} bytes before it")
        cursor = info.end
    if cursor > file_size:
        raise FormatError(path, f"file is truncated: tensors need {cursor} bytes, the file has {file_size}")
    if cursor < file_size:
        raise FormatError(path, f"file has {file_size - cursor} unexpected bytes after the last tensor")


def load_tensors(
    path: str | os.PathLike, keys: list[str] | None = None, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Validate ``path`` and load ``keys`` (all tensors when None) with safetensors' own reader."""
    path = Path(path)
    header = read_header(path)
    wanted = list(header.tensors) if keys is None else list(keys)
    missing = [k for k in wanted if k not in header.tensors]
    if missing:
        raise FormatError(path, f"has no tensor named {missing[0]!r}")
    from safetensors import safe_open  # local: keeps `import loradeck.formats` light

    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            return {k: f.get_tensor(k) for k in wanted}
    except Exception as e:  # safetensors raises its own error types; the user needs one sentence
        raise FormatError(path, f"safetensors could not read the tensors ({e})") from e
