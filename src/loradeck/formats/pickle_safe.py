"""Loading pickled ``.pt``/``.ckpt`` files without running their code.

Only ``torch.load(weights_only=True)`` is used: its unpickler accepts tensors, plain containers and numbers and
refuses every other global, so a hostile pickle cannot execute anything. A checkpoint that wraps its weights in
``{"state_dict": {...}}`` (Lightning, old A1111 .ckpt) is unwrapped.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from loradeck.errors import FormatError

# The largest .ckpt in circulation is ~8 GB (SDXL fp32 with EMA); a pickle is read whole into RAM, so a bigger
# one is refused before torch.load sees it.
MAX_PICKLE_BYTES = 16 * 1024**3


def load_pickle_object(
    path: str | os.PathLike, device: str | torch.device = "cpu", max_bytes: int = MAX_PICKLE_BYTES
) -> object:
    """Whatever a pickled file holds (tensors, plain containers, numbers, strings), loaded safely and size-capped;
    FormatError otherwise. Used directly for files that nest their tensors (textual-inversion ``.pt``)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError as e:
        raise FormatError(path, "file does not exist") from e
    except OSError as e:
        raise FormatError(path, f"cannot be read ({e.strerror or e})") from e
    if size > max_bytes:
        raise FormatError(path, f"is {_size(size)}, more than the {_size(max_bytes)} a pickle may be")
    try:
        return torch.load(path, map_location=device, weights_only=True, mmap=False)
    except FileNotFoundError as e:
        raise FormatError(path, "file does not exist") from e
    except Exception as e:  # UnpicklingError (forbidden global), zip errors, truncation, RecursionError...
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise FormatError(path, f"is not a safely loadable PyTorch checkpoint ({first})") from e


def _size(n: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}" if n % scale else f"{n // scale} {unit}"
    return f"{n} bytes"


def load_pickle_state_dict(
    path: str | os.PathLike, device: str | torch.device = "cpu", max_bytes: int = MAX_PICKLE_BYTES
) -> dict[str, torch.Tensor]:
    """Load a tensor dict from a pickled checkpoint, safely; raise FormatError otherwise."""
    path = Path(path)
    obj = load_pickle_object(path, device, max_bytes)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise FormatError(path, f"holds a {type(obj).__name__}, not a dict of tensors")
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise FormatError(path, "holds no tensors")
    return tensors
