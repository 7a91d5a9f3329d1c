"""Hires fix: A1111's target sizes and upscalers; a normal first pass, then img2img from the upscaled result."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from loradeck.engine.hires import resolve_upscaler, target_size
from loradeck.prompt.pnginfo import request_from_png
from loradeck.services.studio import Studio
from loradeck.vocab import GenerationRequest, HiresFix

PROMPT = "a red circle on a blue background"


def test_target_size_follows_a1111():
    assert target_size(512, 768, 1.5) == (768, 1152)
    assert target_size(512, 768, 1.3) == (664, 992)  # int(665.6), int(998.4), then down to a multiple of 8
    assert target_size(512, 768, 2.0, resize_x=1024) == (1024, 1536)  # one side given: aspect kept
    assert target_size(512, 768, 2.0, resize_y=1000) == (664, 1000)
    assert target_size(512, 768, 2.0, 640, 640) == (640, 640)


def test_unknown_upscalers_fall_back_to_lanczos_with_a_warning():
    assert resolve_upscaler(None) == ("Latent", None)
    assert resolve_upscaler("Latent (bicubic antialiased)") == ("Latent (bicubic antialiased)", None)
    used, warning = resolve_upscaler("R-ESRGAN 4x+")
    assert used == "Lanczos" and "R-ESRGAN 4x+" in warning


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    return Studio(home=tmp_path_factory.mktemp("home"))


def _record_runs(studio, monkeypatch):
    """Wrap the runner so each pass's init image and output can be inspected."""
    runner = studio.model.runner
    calls = []
    real = runner.run

    def spy(cond, seeds, **kw):
        out = real(cond, seeds, **kw)
        calls.append({**kw, "out": out})
        return out

    monkeypatch.setattr(runner, "run", spy)
    return calls


@pytest.mark.parametrize("upscaler", ["Latent", "Latent (bicubic antialiased)", "Lanczos"])
def test_second_pass_starts_from_the_upscaled_first_pass(studio, monkeypatch, upscaler):
    studio.generate(GenerationRequest(PROMPT, steps=2, save=False))  # loads the model
    calls = _record_runs(studio, monkeypatch)
    hr = HiresFix(scale=2.0, upscaler=upscaler, steps=10, denoising_strength=0.5)
    result = studio.generate(GenerationRequest(PROMPT, seed=4, steps=8, batch_size=2, save=False, hires=hr))
    first, second = calls
    plain = studio.generate(GenerationRequest(PROMPT, seed=4, steps=8, batch_size=2, save=False))
    if upscaler.startswith("Latent"):
        mode, aa = ("bilinear", False) if upscaler == "Latent" else ("bicubic", True)
        expected = F.interpolate(first["out"].float(), size=(64, 64), mode=mode, antialias=aa)
        assert torch.equal(second["init_image"], expected)
    else:
        for picture, same_seed in zip(first["out"], plain.images, strict=True):  # the first pass is plain txt2img
            assert (np.asarray(picture) == np.asarray(same_seed.image)).all()
        for init, picture in zip(second["init_image"], first["out"], strict=True):
            assert (np.asarray(init) == np.asarray(picture.resize((64, 64), Image.Resampling.LANCZOS))).all()
    assert (second["width"], second["height"], second["steps"], second["denoising_strength"]) == (64, 64, 10, 0.5)
    assert [im.image.size for im in result.images] == [(64, 64)] * 2
    info = result.images[0].infotext.splitlines()[-1]
    assert "Size: 32x32" in info and "Denoising strength: 0.5" in info and "Hires upscale: 2.0" in info
    assert f"Hires steps: 10, Hires upscaler: {upscaler}" in info


def test_hires_png_rerenders_identically(studio):
    hr = HiresFix(scale=1.5, upscaler="Latent (nearest-exact)", denoising_strength=0.6)
    result = studio.generate(GenerationRequest(PROMPT, seed=9, steps=6, hires=hr))
    again = studio.generate(request_from_png(result.images[0].path))
    assert again.images[0].image.size == (48, 48)
    assert (np.asarray(again.images[0].image) == np.asarray(result.images[0].image)).all()


def test_a1111_api_enable_hr(served_demo):
    body = {
        "prompt": PROMPT,
        "steps": 4,
        "seed": 2,
        "width": 32,
        "height": 32,
        "enable_hr": True,
        "hr_scale": 2,
        "hr_upscaler": "Latent",
        "denoising_strength": 0.5,
    }
    r = httpx.post(f"{served_demo}/sdapi/v1/txt2img", json=body, timeout=120)
    assert r.status_code == 200, r.text
    from tests.server.helpers import b64_to_array

    assert b64_to_array(r.json()["images"][0]).shape == (64, 64, 3)
    assert "Hires upscale: 2" in r.json()["info"]
    too_big = httpx.post(
        f"{served_demo}/sdapi/v1/txt2img", json=body | {"hr_scale": 16, "hr_resize_x": 4096}, timeout=60
    )
    assert too_big.status_code == 422 and "Hires fix size" in too_big.json()["detail"]


@pytest.fixture(scope="module")
def served_demo(tmp_path_factory):
    from loradeck.server import create_app
    from tests.helpers.servers import running_server

    app = create_app(Studio(home=tmp_path_factory.mktemp("srv")))
    with running_server(app) as url:
        yield url


def test_hires_sampler_is_used_for_the_second_pass_and_recorded(studio, monkeypatch):
    studio.generate(GenerationRequest(PROMPT, steps=2, save=False))
    calls = _record_runs(studio, monkeypatch)
    hr = HiresFix(scale=1.5, upscaler="Lanczos", denoising_strength=0.5, sampler="DPM++ 2M")
    result = studio.generate(GenerationRequest(PROMPT, seed=5, steps=6, sampler="Euler a", hires=hr))
    first, second = calls
    assert (first["sampler"], second["sampler"], second["schedule"]) == ("Euler a", "DPM++ 2M", "Karras")
    assert "Hires sampler: DPM++ 2M, Hires schedule type: Karras" in result.images[0].infotext
    monkeypatch.undo()
    again = studio.generate(request_from_png(result.images[0].path))
    assert (np.asarray(again.images[0].image) == np.asarray(result.images[0].image)).all()
