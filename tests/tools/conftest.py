"""Random LoRA files of several kinds over the demo model's modules (shapes from the shipped demo configs)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from loradeck.families import Family
from loradeck.lora.files.shapes import module_shapes
from loradeck.lora.keymap import keymap_for_family


def demo_targets(conv: bool = False) -> dict[str, tuple[int, ...]]:
    km = keymap_for_family(Family.DEMO)
    shapes = module_shapes(Family.DEMO)
    names = list(km.modules) + (list(km.conv_modules) if conv else [])
    return {n: shapes[n] for n in names if n in shapes}


def lora_file(path: Path, *, rank=4, alpha=2.0, seed=0, conv=False, scale=0.2, dtype=torch.float32) -> Path:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape in demo_targets(conv).items():
        out, rest = shape[0], shape[1:]
        sd[f"{name}.lora_down.weight"] = (torch.randn(rank, *rest, generator=g) * scale).to(dtype)
        up_shape = (out, rank, 1, 1) if len(shape) == 4 else (out, rank)
        sd[f"{name}.lora_up.weight"] = (torch.randn(up_shape, generator=g) * scale).to(dtype)
        sd[f"{name}.alpha"] = torch.tensor(alpha, dtype=dtype)
    save_file(sd, str(path), metadata={"ss_network_dim": str(rank), "ss_network_alpha": str(alpha)})
    return path


def loha_file(path: Path, *, rank=2, alpha=1.0, seed=1, scale=0.3) -> Path:
    """LoHa over the linear/1×1 modules (hada_w*_b flattened as LyCORIS writes them)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape in demo_targets().items():
        n = 1
        for d in shape[1:]:
            n *= d
        for part in ("w1", "w2"):
            sd[f"{name}.hada_{part}_a"] = torch.randn(shape[0], rank, generator=g) * scale
            sd[f"{name}.hada_{part}_b"] = torch.randn(rank, n, generator=g) * scale
        sd[f"{name}.alpha"] = torch.tensor(alpha)
    save_file(sd, str(path))
    return path


def lokr_file(path: Path, *, seed=2, scale=0.3) -> Path:
    """LoKr (both parts full, s = 1) over the modules whose sizes split by 2 (dense ΔW, near full rank)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape in demo_targets().items():
        out, n = shape[0], shape[1]
        if len(shape) != 2 or out % 2 or n % 2:
            continue
        sd[f"{name}.lokr_w1"] = torch.randn(2, 2, generator=g) * scale
        sd[f"{name}.lokr_w2"] = torch.randn(out // 2, n // 2, generator=g) * scale
    save_file(sd, str(path))
    return path


@pytest.fixture
def files(tmp_path):
    return {
        "lora": lora_file(tmp_path / "a.safetensors"),
        "locon": lora_file(tmp_path / "c.safetensors", rank=3, alpha=1.5, seed=5, conv=True),
        "loha": loha_file(tmp_path / "h.safetensors"),
        "lokr": lokr_file(tmp_path / "k.safetensors"),
    }


def dense(path: Path) -> dict[str, torch.Tensor]:
    """ΔW per module through the generation path (lora.math, as the patcher merges it), flattened."""
    from loradeck.lora.formats import load_lora
    from loradeck.lora.math import base_delta

    lora = load_lora(path)
    km = keymap_for_family(Family.DEMO)
    shapes = module_shapes(Family.DEMO)
    out = {}
    for spec in lora.modules.values():
        name = km.canonical(spec.name)
        out[name] = base_delta(spec, torch.Size(shapes[name])).reshape(shapes[name][0], -1)
    return out
