"""Inpainting (A1111 semantics): the prediction blend, the fills, "only masked" crops, and whole jobs on the demo."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from loradeck.engine.inpaint import _alpha_bar, blend_prediction, crop_region, fill, inpaint_hooks, prepare_mask
from loradeck.vocab import GenerationRequest, Inpaint


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_blended_prediction_implies_init_outside_and_the_model_inside(kind):
    torch.manual_seed(0)
    alphas = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)
    sample, pred, init = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.randn(1, 3, 4, 4)
    redraw = torch.zeros(1, 1, 4, 4)
    redraw[..., :2, :] = 1
    t = torch.tensor([500.0, 500.0])
    out = blend_prediction(sample, pred, t, init, redraw, alphas, kind)
    ab = _alpha_bar(alphas, t).reshape(-1, 1, 1, 1)
    a, s = ab.sqrt(), (1 - ab).sqrt()

    def x0(p):
        return a * sample - s * p if kind == "v_prediction" else (sample - s * p) / a

    torch.testing.assert_close(x0(out)[..., 2:, :], init.expand(2, -1, -1, -1)[..., 2:, :], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x0(out)[..., :2, :], x0(pred)[..., :2, :], rtol=1e-4, atol=1e-4)


def test_crop_region_pads_and_takes_the_output_aspect():
    mask = Image.new("L", (100, 80), 0)
    ImageDraw.Draw(mask).rectangle((40, 30, 49, 39), fill=255)  # bbox (40, 30, 50, 40)
    assert crop_region(mask, 5, 64, 64) == (35, 25, 55, 45)  # square already: padded only
    x1, y1, x2, y2 = crop_region(mask, 5, 128, 64)  # twice as wide: widened around the centre
    assert (x2 - x1, y2 - y1) == (40, 20) and x1 <= 35 and x2 >= 55 and (x1 + x2) // 2 == 45
    assert crop_region(Image.new("L", (10, 10), 0), 4, 8, 8) is None


def test_fill_paints_the_hole_with_the_colours_around_it():
    image = Image.new("RGB", (64, 64), (220, 20, 20))
    ImageDraw.Draw(image).rectangle((20, 20, 43, 43), fill=(0, 0, 255))  # the part to paint over
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((20, 20, 43, 43), fill=255)
    out = np.asarray(fill(image, mask)).astype(int)
    assert np.abs(out[20:44, 20:44] - [220, 20, 20]).max() <= 8  # red all over (8-bit rounding): no blue left
    assert np.array_equal(out[:20], np.asarray(image)[:20])  # outside untouched


@pytest.mark.parametrize("mode", [2, 3])
def test_latent_fills_replace_the_masked_init_latents(tmp_path, mode):
    from loradeck.services.studio import Studio

    vae = Studio(home=tmp_path).model.base.vae
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    plain = vae.encode(x).latent_dist.mean
    redraw = torch.zeros(1, 1, 16, 16)
    redraw[..., 4:12, 4:12] = 1
    noise = torch.randn(1, 3, 16, 16)
    with inpaint_hooks(
        torch.nn.Identity(), vae, init_latents=plain, redraw=redraw, alphas_cumprod=torch.ones(2),
        prediction="epsilon", fill_mode=mode, noise=noise, scaling_factor=1.0,
    ):  # fmt: skip
        filled = vae.encode(x).latent_dist.mean
    inside = redraw.bool().expand_as(plain)
    torch.testing.assert_close(filled[~inside], plain[~inside])
    expected = noise[inside] if mode == 2 else torch.zeros_like(plain[inside])
    torch.testing.assert_close(filled[inside], expected)
    torch.testing.assert_close(vae.encode(x).latent_dist.mean, plain)  # the hook is gone


def _scene():
    init = Image.new("RGB", (64, 64), (200, 40, 40))
    ImageDraw.Draw(init).ellipse((16, 16, 48, 48), fill=(30, 60, 220))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((8, 8, 31, 31), fill=255)
    return init, mask


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    from loradeck.services.studio import Studio

    return Studio(home=tmp_path_factory.mktemp("inpaint"))


@pytest.mark.parametrize(("fill_mode", "full_res", "invert"), [(1, False, False), (0, True, False), (3, False, True)])
def test_masked_region_changes_and_the_rest_is_the_init_picture(studio, fill_mode, full_res, invert):
    init, mask = _scene()
    spec = Inpaint(mask=mask, blur=4, fill=fill_mode, full_res=full_res, padding=4, invert=invert)
    request = GenerationRequest(
        "a green square", seed=3, steps=4, width=64, height=64, init_image=init, denoising_strength=0.9, save=False
    )
    request.inpaint = spec
    result = studio.generate(request)
    out, src = np.asarray(result.images[0].image).astype(int), np.asarray(init).astype(int)
    blurred = np.asarray(prepare_mask(mask, (64, 64), invert, 4))
    keep = blurred == 0  # outside the mask and its blur band
    assert np.array_equal(out[keep], src[keep])
    redraw = np.asarray(prepare_mask(mask, (64, 64), invert, 0)) == 255
    core = redraw & (blurred == 255)
    assert np.abs(out[core] - src[core]).mean() > 10  # the masked part was redrawn
    infotext = result.images[0].infotext
    assert "Mask blur: 4" in infotext and ("Inpaint area: Only masked" in infotext) == full_res
    assert ("Mask mode: Inpaint not masked" in infotext) == invert


def test_only_masked_draws_the_crop_at_full_size(studio, monkeypatch):
    """With inpaint_full_res the sampler sees the crop (padded box) scaled up to the output size."""
    from loradeck.engine import pipeline

    init, mask = _scene()
    seen = {}
    run = pipeline.Runner.run

    def spy(self, cond, seeds, **kw):
        seen["image"] = kw["init_image"]
        return run(self, cond, seeds, **kw)

    monkeypatch.setattr(pipeline.Runner, "run", spy)
    request = GenerationRequest("x", seed=1, steps=2, width=64, height=64, init_image=init, save=False)
    request.inpaint = Inpaint(mask=mask, blur=0, fill=1, full_res=True, padding=0)
    studio.generate(request)
    box = crop_region(mask, 0, 64, 64)
    expected = init.crop(box).resize((64, 64), Image.Resampling.LANCZOS)
    assert box == (8, 8, 32, 32)
    assert np.array_equal(np.asarray(seen["image"]), np.asarray(expected))


def test_noise_multiplier_scales_the_noise_added_to_the_init_picture(studio):
    """With multiplier 0 the first U-Net input is the init picture's latents (scaled); with 1 it is noisy."""
    init, _ = _scene()
    base = studio.model.base
    x0 = base.vae.encode(torch.from_numpy(np.asarray(init, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None])
    x0 = x0.latent_dist.mode().flatten()
    cosines = {}
    for m in (0.0, 1.0):
        seen = []
        hook = base.unet.register_forward_pre_hook(
            lambda _m, args, seen=seen: seen.append(args[0][0].detach().flatten())
        )
        request = GenerationRequest("x", seed=1, steps=2, width=64, height=64, init_image=init, save=False)
        request.denoising_strength, request.noise_multiplier = 1.0, m
        try:
            result = studio.generate(request)
        finally:
            hook.remove()
        cosines[m] = float(torch.nn.functional.cosine_similarity(seen[0], x0, dim=0))
        assert ("Noise multiplier: 0.0" in result.images[0].infotext) == (m == 0.0)
    assert cosines[0.0] > 0.999 and cosines[1.0] < 0.5
