"""Write small random kohya LoRA files for the models the tests use (demo model, reduced SD checkpoints)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from loradeck.families import Family
from loradeck.lora import keymap_from_models


def kohya_lora_tensors(
    components: dict,
    keymap,
    *,
    rank: int = 4,
    alpha: float = 2.0,
    seed: int = 0,
    scale: float = 0.05,
    only: str | None = None,
) -> dict[str, torch.Tensor]:
    """lora_down/lora_up/alpha for every Linear (and 1×1 conv) module of ``keymap`` found in ``components``."""
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name, ref in sorted(keymap.modules.items()):
        if only and not name.startswith(only):
            continue
        module = components[ref.component].get_submodule(ref.path)
        w = module.weight
        if w.dim() == 2:
            out_dim, in_dim = w.shape
            down = torch.randn(rank, in_dim, generator=g) * scale
            up = torch.randn(out_dim, rank, generator=g) * scale
        elif w.dim() == 4 and w.shape[2:] == (1, 1):
            out_dim, in_dim = w.shape[:2]
            down = torch.randn(rank, in_dim, 1, 1, generator=g) * scale
            up = torch.randn(out_dim, rank, 1, 1, generator=g) * scale
        else:
            continue
        out[f"{name}.lora_down.weight"] = down.contiguous()
        out[f"{name}.lora_up.weight"] = up.contiguous()
        out[f"{name}.alpha"] = torch.tensor(float(alpha))
    return out


def write_lora_for(base, path: Path, *, metadata: dict[str, str] | None = None, **kw) -> Path:
    """A random kohya LoRA for a loaded BaseModel (loradeck.engine.checkpoints.BaseModel)."""
    encoders = {"te1": base.text_encoder} | ({"te2": base.text_encoder_2} if base.text_encoder_2 else {})
    keymap = keymap_from_models(base.family, base.unet, encoders)
    tensors = kohya_lora_tensors({"unet": base.unet, **encoders}, keymap, **kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata or {})
    return path


_DEMO_FILES = {"unet": "unet/diffusion_pytorch_model.safetensors", "te1": "text_encoder/model.safetensors"}


def write_demo_lora(
    path: Path,
    seed: int = 0,
    *,
    rank: int = 4,
    scale: float = 0.15,
    alpha: float | None = None,
    alias: str | None = None,
) -> Path:
    """A kohya LoRA over every module of the demo model: names from ``keymap_for_family(DEMO)``, shapes read from the
    demo model's weight files (no model is built), random factors from ``seed``; alpha defaults to the rank."""
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import save_file as save_np

    from loradeck.demo.paths import demo_model_dir
    from loradeck.lora import keymap_for_family

    rng = np.random.default_rng(seed)
    alpha = float(rank if alpha is None else alpha)
    handles = {c: safe_open(demo_model_dir() / f, "np") for c, f in _DEMO_FILES.items()}
    tensors: dict = {}
    for name, ref in keymap_for_family(Family.DEMO).modules.items():
        shape = handles[ref.component].get_slice(ref.path + ".weight").get_shape()
        out_f, in_f, tail = shape[0], shape[1], list(shape[2:])
        tensors[f"{name}.lora_down.weight"] = (rng.standard_normal([rank, in_f, *tail]) * scale).astype(np.float32)
        up = rng.standard_normal([out_f, rank] + [1] * len(tail)) * scale
        tensors[f"{name}.lora_up.weight"] = up.astype(np.float32)
        tensors[f"{name}.alpha"] = np.array(alpha, np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"ss_network_dim": str(rank), "ss_network_alpha": f"{alpha:g}"}
    if alias:
        metadata["ss_output_name"] = alias
    save_np(tensors, str(path), metadata=metadata)
    return path
