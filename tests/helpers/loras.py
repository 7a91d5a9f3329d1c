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


_DEMO = {}


def demo_base():
    """The embedded demo model, loaded once per test session (read-only use!)."""
    if "base" not in _DEMO:
        from loradeck.engine.checkpoints import load_base_model
        from loradeck.studio import demo_model_dir

        base = load_base_model(demo_model_dir())
        base.family = Family.DEMO
        _DEMO["base"] = base
    return _DEMO["base"]


def write_demo_lora(path: Path, **kw) -> Path:
    """A random kohya LoRA for the demo model."""
    return write_lora_for(demo_base(), path, **kw)
