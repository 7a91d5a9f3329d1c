"""merge_into_checkpoint: the baked file equals base + w·(α/r)·up@down on the LoRA's modules, and nothing else moved."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tests.helpers.checkpoints import write_checkpoint

from loradeck.errors import InvalidRequest
from loradeck.lora.bake import merge_into_checkpoint

RANK, ALPHA = 4, 2.0


def _lora(path, modules: dict[str, tuple[int, int]], seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """A kohya LoRA file; returns {module: (up, down)} in float32."""
    g = torch.Generator().manual_seed(seed)
    tensors, factors = {}, {}
    for name, (out_dim, in_dim) in modules.items():
        up, down = torch.randn(out_dim, RANK, generator=g), torch.randn(RANK, in_dim, generator=g)
        tensors[f"{name}.lora_up.weight"], tensors[f"{name}.lora_down.weight"] = up, down
        tensors[f"{name}.alpha"] = torch.tensor(ALPHA)
        factors[name] = (up, down)
    save_file(tensors, str(path))
    return factors


def _delta(factors, name: str, weight: float) -> torch.Tensor:
    up, down = factors[name]
    return weight * (ALPHA / RANK) * (up @ down)


def test_sd1_bake_follows_the_formula(tmp_path):
    base_path = tmp_path / "base.safetensors"
    base = write_checkpoint(base_path, "sd15")
    q = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    te = "lora_te_text_model_encoder_layers_1_mlp_fc1"
    factors = _lora(tmp_path / "a.safetensors", {q: (32, 32), te: (128, 768)})
    out = tmp_path / "baked.safetensors"
    report = merge_into_checkpoint(base_path, [(tmp_path / "a.safetensors", 0.7)], out)
    assert report.files[0].modules_matched == 2
    baked = load_file(str(out))
    assert baked.keys() == base.keys() and all(baked[k].dtype == base[k].dtype for k in base)
    targets = {
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight": q,
        "cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc1.weight": te,
    }
    for key, name in targets.items():
        torch.testing.assert_close(baked[key], base[key] + _delta(factors, name, 0.7), rtol=1e-5, atol=1e-6)
    assert all(torch.equal(baked[k], base[k]) for k in base if k not in targets)


def test_sd2_openclip_rows_and_fp16_kept(tmp_path):
    base_path = tmp_path / "sd2.safetensors"
    base = write_checkpoint(base_path, "sd2v", dtype=torch.float16, metadata={"modelspec.title": "x"})
    v = "lora_te_text_model_encoder_layers_1_self_attn_v_proj"
    factors = _lora(tmp_path / "b.safetensors", {v: (1024, 1024)})
    out = tmp_path / "sd2-baked.safetensors"
    merge_into_checkpoint(base_path, [(tmp_path / "b.safetensors", -0.5)], out)
    baked = load_file(str(out))
    key = "cond_stage_model.model.transformer.resblocks.1.attn.in_proj_weight"
    want = base[key].float().clone()
    want[2048:] += _delta(factors, v, -0.5)  # v is the third block of rows of in_proj_weight
    assert baked[key].dtype == torch.float16
    assert torch.equal(baked[key], want.half())  # one rounding of (W + ΔW), as the patcher merges
    assert all(torch.equal(baked[k], base[k]) for k in base if k != key)
    with safe_open(str(out), "pt") as f:
        assert f.metadata()["modelspec.title"] == "x"


def test_refuses_other_output_types(tmp_path):
    with pytest.raises(InvalidRequest):
        merge_into_checkpoint(tmp_path / "x.safetensors", [], tmp_path / "out.ckpt")
