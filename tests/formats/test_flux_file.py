"""A Flux transformer file as distributed (BFL names; bf16 and fp8-e4m3 storage; ComfyUI's prefix) reads into
diffusers' FluxTransformer2DModel with every weight where diffusers' own single-file conversion puts it: the
reference BFL file is written here from a random reduced model by that conversion's rules (qkv / linear1 fused,
final adaLN halves swapped), and reading it back gives the same weights and the same forward output."""

from __future__ import annotations

import pytest
import torch
from diffusers import FluxTransformer2DModel
from tests.helpers.flux import build_tiny_flux, to_bfl

from loradeck.formats.flux_file import bfl_to_diffusers, infer_config, is_bfl_flux


def _forward(tr, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = tr.config
    x = torch.randn(1, 16, c.in_channels, generator=g)
    ctx = torch.randn(1, 8, c.joint_attention_dim, generator=g)
    with torch.no_grad():
        return tr(
            hidden_states=x,
            encoder_hidden_states=ctx,
            pooled_projections=torch.randn(1, c.pooled_projection_dim, generator=g),
            timestep=torch.tensor([0.5]),
            img_ids=torch.zeros(16, 3),
            txt_ids=torch.zeros(8, 3),
            guidance=torch.tensor([3.5]),
        ).sample


@pytest.mark.parametrize("storage", [torch.float32, torch.bfloat16, torch.float8_e4m3fn])
@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_bfl_file_reads_back(storage, prefix):
    tr = build_tiny_flux()[0]["transformer"]
    bfl = {prefix + k: v.to(storage) for k, v in to_bfl(tr).items()}
    if prefix:  # ComfyUI's all-in-one file: the other components' tensors are not the transformer's
        bfl["text_encoders.clip_l.transformer.text_model.final_layer_norm.weight"] = torch.zeros(1)
    assert is_bfl_flux(bfl)
    state, config, unused = bfl_to_diffusers(bfl)
    assert unused == []
    assert {k: config[k] for k in ("num_layers", "num_single_layers", "attention_head_dim", "in_channels")} == {
        k: tr.config[k] for k in ("num_layers", "num_single_layers", "attention_head_dim", "in_channels")
    }
    loaded = FluxTransformer2DModel(**config)
    loaded.load_state_dict(state, strict=True)
    want = {k: v.to(storage).float() for k, v in tr.state_dict().items()}  # what the file could hold
    got = loaded.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    if storage is torch.float32:
        assert torch.equal(_forward(loaded), _forward(tr))


def test_missing_tensor_is_one_sentence():
    from loradeck.errors import ModelLoadError

    tr = build_tiny_flux()[0]["transformer"]
    bfl = to_bfl(tr)
    del bfl["txt_in.weight"]
    with pytest.raises(ModelLoadError, match="txt_in.weight"):
        infer_config({k: tuple(v.shape) for k, v in bfl.items()})
