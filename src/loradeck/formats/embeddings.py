"""Textual-inversion embedding files → one vector table per text encoder, read as A1111 reads them.

A1111's ``create_embedding_from_data`` (modules/textual_inversion/textual_inversion.py) accepts three layouts, and so
do we:

- A1111 ``.pt``: ``{"string_to_param": {"*": [n, width]}, "name", "step", "sd_checkpoint", "sd_checkpoint_name", …}``
  (loaded with ``torch.load(weights_only=True)`` only: a pickle that needs any other class is refused, never run);
- SDXL: ``{"clip_l": [n, 768], "clip_g": [n, 1280]}`` (kohya, A1111 1.6+);
- one tensor under any key ("diffuser concepts"): ``{"emb_params": [n, width]}`` (kohya SD1/SD2 ``.safetensors``),
  ``{"<token>": [width]}`` (diffusers' ``learned_embeds``).

The name is the file stem (A1111 ignores the ``name`` stored inside). The family follows from the vector width, the
way A1111 compares an embedding's ``shape`` with the loaded model's: 768 SD 1.x, 1024 SD 2.x, 768 + 1280 SDXL, 64 the
embedded demo model; any other width fits no model we load. Every check failing is one ``FormatError`` sentence
naming the file: a wrong dtype, NaN, more than 75 vectors (they could never fit in a 75-token chunk), a mismatch
between ``clip_l`` and ``clip_g``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from loradeck.errors import FormatError
from loradeck.families import Family

EMBEDDING_EXTS = (".safetensors", ".pt", ".bin")
# The largest real embeddings are well under 1 MB (75 SDXL vectors in fp32: 600 KB); a bigger file is not one.
MAX_EMBEDDING_BYTES = 32 * 1024**2
MAX_VECTORS = 75  # one 75-token chunk
WIDTH_FAMILY = {768: Family.SD1, 1024: Family.SD2, 64: Family.DEMO}
SDXL_WIDTHS = (768, 1280)  # clip_l, clip_g


@dataclass(frozen=True)
class Embedding:
    """An embedding's vectors, one [vectors, width] float32 table per text encoder of its family (SDXL: clip_l then
    clip_g), with A1111's descriptive fields."""

    name: str
    parts: tuple[torch.Tensor, ...]
    family: Family
    source: str = ""  # the file, or "lora.safetensors/NAME" for an embedding bundled in a LoRA
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None

    @property
    def vectors(self) -> int:
        return int(self.parts[0].shape[0])

    @property
    def shape(self) -> int:
        """A1111's ``shape``: the vector width, both encoders' together for SDXL (2048)."""
        return sum(int(p.shape[1]) for p in self.parts)

    def a1111(self) -> dict[str, Any]:
        """A1111's ``/sdapi/v1/embeddings`` item."""
        return {
            "step": self.step,
            "sd_checkpoint": self.sd_checkpoint,
            "sd_checkpoint_name": self.sd_checkpoint_name,
            "shape": self.shape,
            "vectors": self.vectors,
        }


def read_embedding(path: str | os.PathLike, max_bytes: int = MAX_EMBEDDING_BYTES) -> Embedding:
    """The embedding in ``path`` (``.safetensors``; ``.pt``/``.bin`` through the safe unpickler). FormatError if not."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise FormatError(path, f"cannot be read ({e.strerror or e})") from e
    if size > max_bytes:
        raise FormatError(path, f"is {size // 1024**2} MB, too large to be a textual-inversion embedding")
    if path.suffix.lower() == ".safetensors":
        from loradeck.formats.safetensors_io import load_tensors

        data: object = load_tensors(path)
    else:
        from loradeck.formats.pickle_safe import load_pickle_object

        data = load_pickle_object(path, max_bytes=max_bytes)
    return embedding_from_data(data, path.stem, path)


def embedding_from_data(data: object, name: str, source: str | os.PathLike) -> Embedding:
    """An ``Embedding`` from what a file (or a LoRA's ``bundle_emb.NAME.*`` keys) holds; FormatError if it is none."""
    if not isinstance(data, Mapping) or not data:
        raise FormatError(source, "is not a textual-inversion embedding (no tensors in it)")
    parts: tuple[torch.Tensor, ...]
    if "string_to_param" in data:
        params = data["string_to_param"]
        if not isinstance(params, Mapping) or len(params) != 1:
            count = len(params) if isinstance(params, Mapping) else 0
            raise FormatError(source, f"has {count} terms in string_to_param; an embedding has exactly one")
        parts = (_table(source, "string_to_param", next(iter(params.values()))),)
    elif "clip_l" in data and "clip_g" in data:
        parts = (_table(source, "clip_l", data["clip_l"]), _table(source, "clip_g", data["clip_g"]))
        if parts[0].shape[0] != parts[1].shape[0]:
            raise FormatError(source, f"has {parts[0].shape[0]} clip_l vectors but {parts[1].shape[0]} clip_g vectors")
    else:
        tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
        if len(tensors) != 1:
            raise FormatError(
                source, f"has {len(tensors)} tensors; an embedding has one (or clip_l and clip_g, or string_to_param)"
            )
        key, value = next(iter(tensors.items()))
        parts = (_table(source, str(key), value),)
    return Embedding(
        name=name,
        parts=parts,
        family=family_of(tuple(int(p.shape[1]) for p in parts)),
        source=str(source),
        step=_int(data.get("step")),
        sd_checkpoint=_text(data.get("sd_checkpoint")),
        sd_checkpoint_name=_text(data.get("sd_checkpoint_name")),
    )


def family_of(widths: tuple[int, ...]) -> Family:
    """The model family whose text encoder(s) take vectors of these widths; UNKNOWN when none does."""
    if len(widths) == 2:
        return Family.SDXL if widths == SDXL_WIDTHS else Family.UNKNOWN
    return WIDTH_FAMILY.get(widths[0], Family.UNKNOWN)


def _table(source: str | os.PathLike, key: str, value: object) -> torch.Tensor:
    """[vectors, width] float32 from one stored tensor (1-D = one vector), checked."""
    where = f"tensor {key[:80]!r}"
    if not isinstance(value, torch.Tensor):
        raise FormatError(source, f"{where} is a {type(value).__name__}, not a tensor")
    if not value.is_floating_point() or value.layout != torch.strided:
        raise FormatError(source, f"{where} is {value.dtype}; embedding vectors must be floating point")
    t = value.detach()
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2 or t.numel() == 0:
        raise FormatError(source, f"{where} has shape {list(value.shape)}; expected [vectors, width]")
    if t.shape[0] > MAX_VECTORS:
        raise FormatError(source, f"{where} has {t.shape[0]} vectors, more than the {MAX_VECTORS} of a prompt chunk")
    t = t.to(device="cpu", dtype=torch.float32).contiguous()
    if not bool(torch.isfinite(t).all()):
        raise FormatError(source, f"{where} contains NaN or infinite values")
    return t


def _int(value: object) -> int | None:
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = int(value.item())
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object) -> str | None:
    return value[:200] if isinstance(value, str) and value else None
