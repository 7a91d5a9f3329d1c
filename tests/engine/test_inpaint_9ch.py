"""9-channel inpainting checkpoints: loaded, drawn (txt2img and inpainting), fed A1111's mask conditioning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file

from loradeck.families import Family
from loradeck.formats.ldm_keys import to_ldm
from loradeck.vocab import GenerationRequest, Inpaint
from tests.helpers.checkpoints import build_components, model_configs, write_tokenizer


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    from loradeck.services.studio import Studio

    root = tmp_path_factory.mktemp("nine")
    configs = model_configs("sd15")
    configs["unet"]["in_channels"] = 9
    state = to_ldm(build_components("sd15", configs, seed=2), Family.SD1)
    (root / "models").mkdir()
    save_file({k: v.contiguous() for k, v in state.items()}, str(root / "models" / "tiny-inpainting.safetensors"))
    studio = Studio(home=root / "home", models_dir=root / "models", tokenizer_dir=write_tokenizer(root / "tok"))
    studio.load_checkpoint("tiny-inpainting")
    return studio


def test_txt2img_on_an_inpainting_model_feeds_a_full_mask(studio):
    unet = studio.model.base.unet
    assert unet.config.in_channels == 9
    seen = []
    hook = unet.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    try:
        result = studio.generate(GenerationRequest("a cat", seed=1, steps=2, width=64, height=64, save=False))
    finally:
        hook.remove()
    assert result.images[0].image.size == (64, 64)
    x = seen[0]
    assert x.shape[1] == 9
    assert torch.equal(x[:, 4:5], torch.ones_like(x[:, 4:5]))  # mask: redraw everything
    vae = studio.model.base.vae
    zero = vae.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mode() * vae.config.scaling_factor
    torch.testing.assert_close(x[:1, 5:], zero)  # the fully masked (zero) picture's latents


def test_inpainting_on_an_inpainting_model(studio):
    init = Image.new("RGB", (64, 64), (200, 40, 40))
    ImageDraw.Draw(init).ellipse((16, 16, 48, 48), fill=(30, 60, 220))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 63), fill=255)  # the left half
    unet = studio.model.base.unet
    seen = []
    hook = unet.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    request = GenerationRequest("a cat", seed=1, steps=2, width=64, height=64, init_image=init, save=False)
    request.denoising_strength = 1.0
    request.inpaint = Inpaint(mask=mask, blur=0, fill=1)
    try:
        result = studio.generate(request)
    finally:
        hook.remove()
    out, src = np.asarray(result.images[0].image).astype(int), np.asarray(init).astype(int)
    assert np.array_equal(out[:, 32:], src[:, 32:])
    cond_mask = seen[0][0, 4]
    assert torch.equal(cond_mask[:, :4], torch.ones_like(cond_mask[:, :4]))  # latent 8×8: left half redraws
    assert torch.equal(cond_mask[:, 4:], torch.zeros_like(cond_mask[:, 4:]))


def test_a_4_channel_lora_on_the_first_conv_is_zero_padded(studio):
    """A1111 pads a 4-channel LoRA's update of conv_in with zeros for the 5 extra channels."""
    from loradeck.lora.report import pad_for_inpainting, shape_problem
    from loradeck.lora.spec import ModuleSpec

    unet = studio.model.base.unet
    out = unet.conv_in.weight.shape[0]
    torch.manual_seed(0)
    down, up = torch.randn(2, 4, 3, 3), torch.randn(out, 2, 1, 1)
    spec = ModuleSpec("lora_unet_conv_in", "lora", {"lora_down.weight": down, "lora_up.weight": up})
    assert shape_problem(spec, unet.conv_in) is not None  # as written, it does not fit
    padded = pad_for_inpainting(spec, unet.conv_in)
    assert shape_problem(padded, unet.conv_in) is None
    assert torch.equal(padded.tensors["lora_down.weight"][:, :4], down)
    assert torch.equal(padded.tensors["lora_down.weight"][:, 4:], torch.zeros(2, 5, 3, 3))

    lora_dir = studio.settings.lora_path
    lora_dir.mkdir(parents=True, exist_ok=True)
    save_file(
        {
            "lora_unet_conv_in.lora_down.weight": down * 0.3,
            "lora_unet_conv_in.lora_up.weight": up * 0.3,
            "lora_unet_conv_in.alpha": torch.tensor(2.0),
        },
        str(lora_dir / "conv4.safetensors"),
    )
    before = unet.conv_in.weight.detach().clone()
    seen = []
    hook = unet.conv_in.register_forward_pre_hook(lambda m, _a: seen.append(m.weight.detach().clone()))
    try:
        result = studio.generate(
            GenerationRequest("a cat <lora:conv4:1>", seed=1, steps=1, width=64, height=64, save=False)
        )
    finally:
        hook.remove()
    assert not any("conv4" in w for w in result.warnings), result.warnings
    delta = seen[0] - before
    expected = (up * 0.3).flatten(1) @ (down * 0.3).flatten(1)
    torch.testing.assert_close(delta[:, :4].flatten(1), expected, rtol=1e-3, atol=1e-4)
    assert torch.equal(delta[:, 4:], torch.zeros_like(delta[:, 4:]))


def test_the_api_says_when_inpainting_conditioning_is_used(studio, tmp_path):
    """A1111's ``info.is_using_inpainting_conditioning``: true on a 9-channel model (txt2img too), false otherwise."""
    import json

    from fastapi.testclient import TestClient

    from loradeck.server import create_app
    from loradeck.services.studio import Studio

    body = {"prompt": "a cat", "seed": 1, "steps": 1, "width": 64, "height": 64}
    with TestClient(create_app(studio)) as http:
        answer = http.post(
            "/sdapi/v1/txt2img", json=body | {"override_settings": {"sd_model_checkpoint": "tiny-inpainting"}}
        )
    assert answer.status_code == 200, answer.text
    assert json.loads(answer.json()["info"])["is_using_inpainting_conditioning"] is True
    with TestClient(create_app(Studio(home=tmp_path / "plain"))) as http:  # the 4-channel demo model
        answer = http.post("/sdapi/v1/txt2img", json=body | {"width": 32, "height": 32})
    assert json.loads(answer.json()["info"])["is_using_inpainting_conditioning"] is False
