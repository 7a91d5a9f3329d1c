"""Merged weights agree with diffusers' load_lora_weights + fuse_lora (one alpha per file: docs/reference/lora-formats.md §3.x traps)."""

from __future__ import annotations

import pytest
import torch
from diffusers import StableDiffusionPipeline

from conftest import build_small_sd1, kohya_lora, snapshot
from loradeck.lora.formats import parse_state_dict
from loradeck.lora.patcher import LoraPatcher, StackEntry


def _diffusers_merged(state_dict, scale: float) -> dict[str, torch.Tensor]:
    comps, _ = build_small_sd1()
    pipe = StableDiffusionPipeline(
        vae=None,
        text_encoder=comps["te1"],
        tokenizer=None,
        unet=comps["unet"],
        scheduler=None,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.load_lora_weights({k: v.clone() for k, v in state_dict.items()})
    pipe.fuse_lora(lora_scale=scale)
    pipe.unload_lora_weights()  # keeps the fused weights, drops the adapter layers
    return snapshot(comps)


def _ours_merged(state_dict, scale: float, tmp_path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    comps, keymap = build_small_sd1()
    base = snapshot(comps)
    lora = parse_state_dict(tmp_path / "x.safetensors", state_dict, {})
    report = LoraPatcher(comps, keymap).apply([StackEntry(lora, te=scale, unet=scale)])
    assert not report.warnings and report.files[0].modules_matched == len(lora.modules)
    return base, snapshot(comps)


def _compare(base, ours, ref, expect_changed: int) -> None:
    changed = 0
    for key, r in ref.items():
        o = ours[key]
        if not torch.equal(base[key], r):
            changed += 1
        tol = 1e-5 * float(r.abs().max())
        assert float((o - r).abs().max()) <= tol, key
    assert changed == expect_changed


def _peft_layout(kohya_sd, keymap) -> dict[str, torch.Tensor]:
    """The same LoRA in diffusers/PEFT layout: unet.<path>.lora_A.weight / text_encoder.text_model.<path>.lora_B…"""
    out = {}
    for name, ref in keymap.modules.items():
        prefix = "unet." if ref.component == "unet" else "text_encoder.text_model."
        out[f"{prefix}{ref.path}.lora_A.weight"] = kohya_sd[f"{name}.lora_down.weight"]
        out[f"{prefix}{ref.path}.lora_B.weight"] = kohya_sd[f"{name}.lora_up.weight"]
    return out


@pytest.mark.parametrize("conv,scale", [(False, 1.0), (False, 0.7), (True, 1.0)])
def test_kohya_lora_and_locon_match_diffusers(tmp_path, conv, scale):
    comps, keymap = build_small_sd1()
    sd = kohya_lora(comps, keymap, rank=4, alpha=2.0, conv=conv)
    base, ours = _ours_merged(sd, scale, tmp_path)
    ref = _diffusers_merged(sd, scale)
    # the reduced config has 64→64 in down block 2, so one conv_shortcut fewer than SD1.5's 86
    _compare(base, ours, ref, expect_changed=264 + (len(keymap.conv_modules) if conv else 0))


def test_peft_layout_matches_diffusers(tmp_path):
    comps, keymap = build_small_sd1()
    sd = _peft_layout(kohya_lora(comps, keymap, rank=4, alpha=None), keymap)
    base, ours = _ours_merged(sd, 1.0, tmp_path)
    ref = _diffusers_merged(sd, 1.0)
    _compare(base, ours, ref, expect_changed=264)
