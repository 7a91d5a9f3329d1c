"""Write LoRA files the way kohya sd-scripts does — the one writer that training and the LoRA tools share.

Canonical kohya names, a 0-dim ``alpha`` per module, fp16/bf16/fp32 tensors, ``ss_*``/``modelspec.*`` metadata
(every value a string), ``sshs_model_hash``/``sshs_legacy_hash`` computed as kohya does, and an optional ``name.json``
sidecar; each file written atomically, so a library scan never sees half a LoRA.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as st_save

from loradeck.arch import native_size
from loradeck.families import Family
from loradeck.formats.sidecars import UserMetadata, atomic_write_bytes, write_preview, write_user_metadata

SAVE_DTYPES = {"float": torch.float32, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def base_model_version(family: Family, prediction_type: str = "epsilon") -> str:
    """kohya ``ss_base_model_version``; the demo model has SD1's architecture and names."""
    v = "_v" if prediction_type == "v_prediction" else ""
    if family is Family.FLUX:
        return "flux1"  # kohya sd-scripts' flux_train_network
    if family is Family.SDXL:
        return "sdxl_base_v1-0"
    if family is Family.SD2:
        return "sd_v2" + v
    return "sd_v1" + v


def architecture(family: Family, prediction_type: str = "epsilon") -> str:
    """``modelspec.architecture`` of a LoRA for ``family``."""
    if family is Family.FLUX:
        return "flux-1-dev/lora"
    if family is Family.SDXL:
        return "stable-diffusion-xl-v1-base/lora"
    if family is Family.SD2:
        return "stable-diffusion-v2-768-v/lora" if prediction_type == "v_prediction" else "stable-diffusion-v2-512/lora"
    return "stable-diffusion-v1/lora"


def modelspec(family: Family, title: str, *, prediction_type: str = "epsilon", resolution: int | None = None) -> dict:
    """The ``modelspec.*`` keys kohya writes for a LoRA (``library/sai_model_spec.py``)."""
    from loradeck.version import __version__

    res = resolution or native_size(Family.SD1 if family is Family.DEMO else family)  # demo LoRAs: SD1's
    return {
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.architecture": architecture(family, prediction_type),
        "modelspec.implementation": "diffusers",  # what training has always written (kohya: SGM's URL for SDXL)
        "modelspec.title": title,
        "modelspec.resolution": f"{res}x{res}",
        "modelspec.date": datetime.now().replace(microsecond=0).isoformat(),
        "modelspec.prediction_type": "v" if prediction_type == "v_prediction" else "epsilon",
        "modelspec.implementation_version": f"loradeck/{__version__}",
    }


def as_text(v: Any) -> str:
    """kohya's ``str(v)``: None → "None", True → "True", (512, 512) → "(512, 512)"."""
    return v if isinstance(v, str) else str(v)


# ------------------------------------------------------------------------------------------------ bytes and hashes
def data_section_sha256(blob: bytes) -> str:
    """sha256 of a safetensors serialisation's bytes after the header (addnet hash / AutoV3 source)."""
    n = struct.unpack("<Q", blob[:8])[0]
    return hashlib.sha256(blob[8 + n :]).hexdigest()


def legacy_hash(blob: bytes) -> str:
    """kohya ``addnet_hash_legacy``: first 8 hex of sha256 of bytes [1 MiB, 1 MiB + 64 KiB)."""
    return hashlib.sha256(blob[0x100000:0x110000]).hexdigest()[:8]


def serialize(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """Safetensors bytes with ``sshs_model_hash`` and ``sshs_legacy_hash`` computed as kohya does (on a
    re-serialisation with only the ``ss_`` metadata; the data section does not depend on the metadata)."""
    ss_only = {k: v for k, v in metadata.items() if k.startswith("ss_")}
    probe = st_save(tensors, ss_only)
    meta = dict(metadata) | {"sshs_model_hash": data_section_sha256(probe), "sshs_legacy_hash": legacy_hash(probe)}
    return st_save(tensors, meta)


def save_lora(
    path: Path,
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, str],
    *,
    trigger: str = "",
    family: Family | None = None,
    description: str | None = None,
) -> Path:
    """Write the LoRA (atomically) and, when a trigger or family is known, its ``name.json`` sidecar."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, serialize(tensors, metadata))
    _readable(path)
    if trigger or family is not None:
        meta = UserMetadata(
            description=description
            or f"Trained with loradeck: {metadata.get('ss_steps', '?')} steps, rank "
            f"{metadata.get('ss_network_dim', '?')}, alpha {metadata.get('ss_network_alpha', '?')}.",
            sd_version=family.label if family is not None else "",
            activation_text=trigger,
            preferred_weight=1.0,
        )
        _readable(write_user_metadata(path, meta))
    return path


def _readable(path: Path) -> None:
    """atomic_write_bytes leaves mkstemp's 0600; a LoRA folder is often shared (A1111 under another user).
    (Reading the umask would mean setting it, which is process-wide and racy in a server.)"""
    os.chmod(path, 0o644)


def save_preview(lora_path: Path, png: bytes) -> Path:
    path = write_preview(lora_path, png, "png")
    _readable(path)
    return path


# ------------------------------------------------------------------------------------------------ module tensors
def kohya_module(
    name: str, shape: tuple[int, ...], up: torch.Tensor, down: torch.Tensor, alpha: float, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """kohya tensors of one module whose scaled ΔW is ``up @ down`` ([out, r] @ [r, in·kh·kw], float32).

    The loader multiplies by α/r, so ``up`` is divided by it here; a 3×3 conv gets ``down`` [r, in, kh, kw] and
    ``up`` [out, r, 1, 1] (kohya LoCon), a 1×1 conv 4-D factors, a linear layer 2-D ones.
    """
    r = down.shape[0]
    up = up / (alpha / r)
    if len(shape) == 4:
        down = down.reshape(r, *shape[1:])
        up = up.reshape(shape[0], r, 1, 1)
    return {
        f"{name}.lora_down.weight": down.to("cpu", dtype).contiguous(),
        f"{name}.lora_up.weight": up.to("cpu", dtype).contiguous(),
        f"{name}.alpha": torch.tensor(float(alpha), dtype=dtype),
    }


@dataclass
class LowRankModule:
    """One module to write: scaled ΔW = ``up @ down`` (float32) and the ``alpha`` to store (r when None: s = 1)."""

    name: str
    shape: tuple[int, ...]
    up: torch.Tensor
    down: torch.Tensor
    alpha: float | None = None

    @property
    def rank(self) -> int:
        return self.down.shape[0]


def kohya_tensors(modules: list[LowRankModule], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The kohya state dict of ``modules`` in ``dtype``."""
    out: dict[str, torch.Tensor] = {}
    for m in modules:
        out |= kohya_module(m.name, m.shape, m.up, m.down, float(m.alpha or m.rank), dtype)
    return out


def network_facts(modules: list[LowRankModule]) -> dict[str, str]:
    """``ss_network_dim``/``ss_network_alpha`` (kohya writes "Dynamic" when modules differ) and ``ss_network_args``
    with ``conv_dim``/``conv_alpha`` when 3×3 convs are present."""

    def common(values: list) -> str | None:
        return None if not values else (str(values[0]) if len(set(values)) == 1 else "Dynamic")

    lin = [m for m in modules if not (len(m.shape) == 4 and m.shape[2] * m.shape[3] > 1)]
    conv = [m for m in modules if m not in lin]
    meta = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": common([m.rank for m in lin]) or common([m.rank for m in conv]) or "0",
        "ss_network_alpha": common([float(m.alpha or m.rank) for m in lin])
        or common([float(m.alpha or m.rank) for m in conv])
        or "0",
    }
    if conv:
        meta["ss_network_args"] = json.dumps(
            {"conv_dim": common([m.rank for m in conv]), "conv_alpha": common([float(m.alpha or m.rank) for m in conv])}
        )
    return meta
