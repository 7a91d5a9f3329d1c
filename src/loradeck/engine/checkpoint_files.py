"""Read the tensors of a single-file checkpoint lazily: names and shapes first, each tensor only when asked for.

``.safetensors``: the header is validated by ``formats.safetensors_io.read_header`` before anything is allocated,
then tensors are read one at a time through safetensors' mmap reader. ``.ckpt``/``.pt``: only
``formats.pickle_safe`` (``torch.load(weights_only=True)``), which refuses any pickle that would run code. Every
failure is a FormatError naming the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from loradeck.errors import FormatError
from loradeck.formats.pickle_safe import load_pickle_state_dict
from loradeck.formats.safetensors_io import read_header

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


@dataclass
class CheckpointFile:
    path: Path
    shapes: dict[str, tuple[int, ...]]
    metadata: dict[str, str]
    _get: Callable[[str], torch.Tensor] = field(repr=False)
    _close: Callable[[], None] = field(repr=False, default=lambda: None)

    def get(self, key: str) -> torch.Tensor:
        try:
            return self._get(key)
        except Exception as err:  # a tensor whose bytes lie past the end of a damaged file
            raise FormatError(self.path, f"cannot read tensor {key!r} ({err})") from err

    def close(self) -> None:
        self._close()

    def __enter__(self) -> CheckpointFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_safetensors(path: Path) -> CheckpointFile:
    from safetensors import safe_open

    header = read_header(path)  # validates lengths and offsets first; FormatError naming the file
    try:
        handle = safe_open(str(path), framework="pt", device="cpu")
    except Exception as err:
        raise FormatError(path, f"safetensors could not open it ({err})") from err
    shapes = {k: info.shape for k, info in header.tensors.items()}
    return CheckpointFile(path, shapes, dict(header.metadata), handle.get_tensor)


def _open_pickle(path: Path) -> CheckpointFile:
    state = load_pickle_state_dict(path)
    return CheckpointFile(path, {k: tuple(v.shape) for k, v in state.items()}, {}, state.__getitem__, state.clear)


def open_checkpoint(path: Path) -> CheckpointFile:
    """Open a ``.safetensors`` or pickle checkpoint for lazy reading; FormatError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, "no such file")
    if path.suffix.lower() == ".safetensors":
        return _open_safetensors(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return _open_pickle(path)
    raise FormatError(path, f"unknown checkpoint type {path.suffix!r} (expected .safetensors or .ckpt)")
