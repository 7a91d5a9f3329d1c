"""Variation seeds (A1111's subseed): the starting noise is slerp(strength, noise(seed), noise(subseed))."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loradeck.engine.noise import slerp, variation_noise
from loradeck.prompt.pnginfo import request_from_png
from loradeck.services.studio import Studio
from loradeck.vocab import GenerationRequest

PROMPT = "a red circle on a blue background"


def test_slerp_endpoints_and_unit_norm_path():
    g = torch.Generator().manual_seed(0)
    low, high = torch.randn(4, 8, 8, generator=g), torch.randn(4, 8, 8, generator=g)
    torch.testing.assert_close(slerp(0.0, low, high), low)
    torch.testing.assert_close(slerp(1.0, low, high), high, rtol=1e-5, atol=1e-5)
    # unit vectors along dim 1: the path stays on the unit sphere, and halfway is equally far from both ends
    u, v = low / low.norm(dim=1, keepdim=True), high / high.norm(dim=1, keepdim=True)
    mid = slerp(0.5, u, v)
    torch.testing.assert_close(mid.norm(dim=1), torch.ones(4, 8), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close((mid * u).sum(1), (mid * v).sum(1), rtol=1e-5, atol=1e-5)
    same = slerp(0.3, low, low)  # parallel vectors: mixed linearly
    torch.testing.assert_close(same, low)


def test_variation_noise_keeps_the_generator_where_diffusers_leaves_it():
    a, b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    noise = variation_noise([a], [9], 0.25, (4, 8, 8), torch.float32)
    plain = torch.randn((1, 4, 8, 8), generator=b)
    other = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(noise[0], slerp(0.25, plain[0], other[0]))
    assert torch.equal(torch.randn(3, generator=a), torch.randn(3, generator=b))  # later sampler noise unchanged


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    return Studio(home=tmp_path_factory.mktemp("home"))


def _pixels(result) -> list[np.ndarray]:
    return [np.asarray(im.image).astype(int) for im in result.images]


def test_full_strength_draws_the_variation_seeds_picture(studio):
    """Euler is deterministic after the first noise: strength 1 starts from seed 30's noise, so it draws seed 30."""
    kw = dict(steps=6, sampler="Euler", save=False)
    varied = studio.generate(GenerationRequest(PROMPT, seed=3, variation_seed=30, variation_strength=1.0, **kw))
    target = studio.generate(GenerationRequest(PROMPT, seed=30, **kw))
    plain = studio.generate(GenerationRequest(PROMPT, seed=3, **kw))
    assert np.abs(_pixels(varied)[0] - _pixels(target)[0]).max() <= 1
    assert np.abs(_pixels(varied)[0] - _pixels(plain)[0]).max() > 8
    half = studio.generate(GenerationRequest(PROMPT, seed=3, variation_seed=30, variation_strength=0.3, **kw))
    assert np.abs(_pixels(half)[0] - _pixels(plain)[0]).max() > 0  # somewhere in between


def test_batches_use_consecutive_subseeds_and_the_png_redraws(studio):
    req = GenerationRequest(PROMPT, seed=3, batch_size=2, variation_seed=40, variation_strength=0.4, steps=4)
    result = studio.generate(req)
    infos = [im.infotext.splitlines()[-1] for im in result.images]
    assert "Variation seed: 40, Variation seed strength: 0.4" in infos[0]
    assert "Variation seed: 41, Variation seed strength: 0.4" in infos[1]
    again = studio.generate(request_from_png(result.images[1].path))
    assert np.abs(_pixels(again)[0] - _pixels(result)[1]).max() <= 1  # batch of 2 vs one: float rounding only
