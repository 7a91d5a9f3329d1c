"""Reduced-width SD1.5-structured models (same module tree and names as SD1.5, tiny channels) and LoRA builders."""

from __future__ import annotations

import json
from importlib import resources

import pytest
import torch
from diffusers import UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from loradeck.families import Family
from loradeck.lora.keymap import build_keymap

SMALL_UNET = dict(block_out_channels=[32, 64, 64, 64], cross_attention_dim=32, attention_head_dim=2, norm_num_groups=8)
SMALL_TE = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=12,
    num_attention_heads=4,
    vocab_size=100,
    projection_dim=32,
    bos_token_id=0,
    eos_token_id=1,
    pad_token_id=1,
)


def sd15_unet_config(**overrides) -> dict:
    cfg = json.loads((resources.files("loradeck") / "configs" / "sd15" / "unet" / "config.json").read_text())
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    cfg.update(overrides)
    return cfg


def build_small_sd1(seed: int = 0):
    torch.manual_seed(seed)
    cfg = sd15_unet_config(**SMALL_UNET)
    unet = UNet2DConditionModel(**cfg).eval()
    te = CLIPTextModel(CLIPTextConfig(**SMALL_TE)).eval()
    keymap = build_keymap(Family.SD1, cfg, {"te1": {"num_hidden_layers": 12}}, {"te1": False})
    return {"unet": unet, "te1": te}, keymap


@pytest.fixture
def sd1_small():
    return build_small_sd1()


def snapshot(components) -> dict[str, torch.Tensor]:
    return {f"{c}.{k}": v.detach().clone() for c, m in components.items() for k, v in m.state_dict().items()}


def kohya_lora(components, keymap, rank=4, alpha=2.0, conv=False, seed=1, per_module_alpha=False, dtype=torch.float32):
    """A kohya LoRA over every default module (and the LoCon conv set with ``conv``), random up and down."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    names = dict(keymap.modules)
    if conv:
        names.update(keymap.conv_modules)
    for i, (name, ref) in enumerate(names.items()):
        w = components[ref.component].get_submodule(ref.path).weight
        down_shape = (rank, *w.shape[1:]) if w.dim() == 4 else (rank, w.shape[1])
        up_shape = (w.shape[0], rank, 1, 1) if w.dim() == 4 else (w.shape[0], rank)
        sd[f"{name}.lora_down.weight"] = (torch.randn(down_shape, generator=g) * 0.2).to(dtype)
        sd[f"{name}.lora_up.weight"] = (torch.randn(up_shape, generator=g) * 0.2).to(dtype)
        a = alpha * (1 + (i % 3)) if per_module_alpha else alpha
        if a is not None:
            sd[f"{name}.alpha"] = torch.tensor(a, dtype=dtype)
    return sd
