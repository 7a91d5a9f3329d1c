"""Sigma-list schedule types (Align Your Steps, KL Optimal, Polyexponential): formulas, installation, pictures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from loradeck.engine.schedulers import make_scheduler
from loradeck.engine.schedulers import resolve_sampler_schedule as resolve
from loradeck.engine.sigmas import AYS_SD1, AYS_SDXL, align_your_steps, kl_optimal, polyexponential
from loradeck.errors import InvalidRequest
from loradeck.services.studio import Studio
from loradeck.vocab import GenerationRequest

SD_CONFIG = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}


def test_formulas():
    assert np.allclose(align_your_steps(11, 0.03, 14.6), [*AYS_SD1, 0.0])
    assert np.allclose(align_your_steps(11, 0.03, 14.6, sdxl=True), [*AYS_SDXL, 0.0])
    ays = align_your_steps(20, 0.03, 14.6)
    assert len(ays) == 21 and ays[0] == pytest.approx(14.615) and ays[19] == pytest.approx(0.029)
    assert np.all(np.diff(ays) < 0)  # strictly falling
    # log-linear resampling to 21: even points are the table's, odd ones the geometric means of their neighbours
    ays21 = align_your_steps(21, 0.03, 14.6)
    assert ays21[2] == pytest.approx(AYS_SD1[1]) and ays21[3] == pytest.approx(math.sqrt(AYS_SD1[1] * AYS_SD1[2]))
    kl = kl_optimal(5, 0.03, 14.6)
    assert kl[0] == pytest.approx(14.6) and kl[4] == pytest.approx(0.03) and kl[5] == 0
    mid = math.tan((math.atan(0.03) + math.atan(14.6)) / 2)
    assert kl[2] == pytest.approx(mid)
    poly = polyexponential(5, 0.03, 14.6)
    assert poly[0] == pytest.approx(14.6) and poly[4] == pytest.approx(0.03)
    assert poly[2] == pytest.approx(math.sqrt(0.03 * 14.6))  # ρ = 1: geometric spacing


@pytest.mark.parametrize("schedule", ["Align Your Steps", "KL Optimal", "Polyexponential"])
@pytest.mark.parametrize("sampler", ["Euler", "Euler a", "DPM++ 2M", "DPM++ 2M SDE", "LMS"])
def test_installed_sigmas_and_matching_timesteps(sampler, schedule):
    scheduler = make_scheduler(SD_CONFIG, sampler, schedule)
    scheduler.set_timesteps(12, device="cpu")
    alphas = scheduler.alphas_cumprod.double()
    model_sigmas = ((1 - alphas) / alphas) ** 0.5
    from loradeck.engine.sigmas import SIGMA_SCHEDULES

    expected = SIGMA_SCHEDULES[schedule](12, float(model_sigmas[0]), float(model_sigmas[-1]))
    assert np.allclose(scheduler.sigmas.numpy(), expected, rtol=1e-6)
    # each timestep is where the model's own sigma curve reaches that sigma (inside the model's range; AYS's ends
    # lie a hair outside it and map to the first and last timestep)
    back = np.interp(scheduler.timesteps.numpy(), np.arange(1000), model_sigmas.numpy())
    assert np.allclose(back[1:-1], expected[1:-2], rtol=2e-3)
    assert np.allclose(back[[0, -1]], expected[[0, -2]], rtol=1e-2)


def test_samplers_that_interleave_sigmas_are_refused():
    for sampler in ("Heun", "DPM2", "DPM++ SDE", "DDIM"):
        with pytest.raises(InvalidRequest, match="does not support the schedule type"):
            make_scheduler(SD_CONFIG, sampler, "KL Optimal")
    assert resolve("DPM++ 2M", "Align Your Steps") == ("DPM++ 2M", "Align Your Steps")


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    return Studio(home=tmp_path_factory.mktemp("home"))


@pytest.mark.parametrize("schedule", ["Align Your Steps", "KL Optimal", "Polyexponential"])
@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M", "DPM++ 2M SDE"])
def test_demo_draws_the_prompt_with_each_schedule(studio, sampler, schedule):
    request = GenerationRequest(
        "a red circle on a blue background", seed=1, steps=20, sampler=sampler, scheduler=schedule, save=False
    )
    result = studio.generate(request)
    picture = np.asarray(result.images[0].image).astype(int)
    centre, corner = picture[12:20, 12:20].mean((0, 1)), picture[:4, :4].mean((0, 1))
    assert centre[0] > 150 > centre[2] and corner[2] > 150 > corner[0]  # red circle, blue background
    assert f"Schedule type: {schedule}" in result.images[0].infotext
    again = studio.generate(request)
    assert torch.equal(torch.from_numpy(np.asarray(again.images[0].image)), torch.from_numpy(picture.astype(np.uint8)))
