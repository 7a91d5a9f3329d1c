"""Live previews: pixel-space latents shown as they are; SD latents through the linear map."""

import numpy as np
import torch

from loradeck.engine.preview import _SD_FACTORS, preview_image
from loradeck.vocab import GenerationRequest


def test_pixel_latents_are_the_picture():
    x = torch.linspace(-1, 1, 3 * 4 * 5).reshape(3, 4, 5)
    got = np.asarray(preview_image(x)).astype(int)
    want = np.round((x.permute(1, 2, 0).numpy() + 1) * 127.5).astype(int)
    assert (got == want).all()


def test_sd_latents_use_the_linear_map():
    x = torch.randn(4, 2, 3) * 0.3
    got = np.asarray(preview_image(x)).astype(int)
    rgb = (x.permute(1, 2, 0) @ _SD_FACTORS).clamp(-1, 1)
    assert np.abs(got - ((rgb.numpy() + 1) * 127.5)).max() <= 0.5 + 1e-6


def test_studio_preview_while_sampling(tmp_path):
    from loradeck.services.studio import Studio

    studio = Studio(home=tmp_path)
    seen = []

    def look(progress):  # called on the device worker, between steps
        if progress.step == 3:
            seen.append(studio.current_preview())

    request = GenerationRequest("a red circle on a blue background", seed=1, steps=6, save=False)
    studio.generate(request, on_progress=look)
    assert seen and seen[0].size == (32, 32)
    assert studio.current_preview() is None  # idle
