"""The runner on the demo model: seeds, batches, samplers, img2img, sizes, cancellation."""

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline

from loradeck.demo.paths import demo_model_dir
from loradeck.engine.conditioning import Conditioning
from loradeck.engine.pipeline import Components, Job, Runner
from loradeck.engine.schedulers import SAMPLERS
from loradeck.engine.schedulers import resolve_sampler_schedule as resolve
from loradeck.errors import Cancelled, InvalidRequest


@pytest.fixture(scope="module")
def runner():
    pipe = StableDiffusionPipeline.from_pretrained(demo_model_dir())
    c = Components(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, dict(pipe.scheduler.config))
    return Runner(c, torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def cond(runner):
    pos, neg = runner.txt2img.encode_prompt("a red circle on a blue background", "cpu", 1, True, "")
    return Conditioning(pos, neg)


def _run(runner, cond, seeds, sampler="Euler a", schedule="Automatic", **kw):
    kw = {"steps": 4, "cfg_scale": 5.0, "width": 32, "height": 32} | kw
    images = runner.run(cond, seeds, sampler=sampler, schedule=schedule, **kw)
    return [np.asarray(im) for im in images]


def _same_picture(a, b):
    """Same noise, same maths; float kernels may round differently with the batch size, by at most 1/255."""
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.02, f"max {diff.max()}, {(diff > 0).mean():.1%} of values differ"


def test_same_seed_same_pixels_and_batch_equals_single(runner, cond):
    a = _run(runner, cond, [5, 6, 7])
    b = _run(runner, cond, [6])
    again = _run(runner, cond, [5, 6, 7])
    assert all((x == y).all() for x, y in zip(a, again))
    _same_picture(a[1], b[0])  # image 2 of a batch seeded 5 = a single run seeded 6
    assert not (a[0] == a[1]).all()


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_sampler_runs_reproducibly(runner, cond, sampler):
    name, schedule = resolve(sampler)
    x = _run(runner, cond, [3, 4], name, schedule)
    y = _run(runner, cond, [4], name, schedule)
    assert x[0].shape == (32, 32, 3)
    _same_picture(x[1], y[0])


def test_legacy_and_schedule_names():
    assert resolve("DPM++ 2M Karras") == ("DPM++ 2M", "Karras")
    assert resolve("DPM++ 2M", "Automatic") == ("DPM++ 2M", "Karras")
    assert resolve("k_euler_a") == ("Euler a", "Automatic")
    assert resolve("Euler", "sgm_uniform") == ("Euler", "SGM Uniform")
    with pytest.raises(InvalidRequest, match="valid samplers"):
        resolve("Euler b")


def test_karras_changes_the_picture(runner, cond):
    plain = _run(runner, cond, [9], "Euler", "Automatic", steps=6)
    karras = _run(runner, cond, [9], "Euler", "Karras", steps=6)
    assert not (plain[0] == karras[0]).all()


def test_img2img_keeps_the_picture_at_low_strength(runner, cond):
    from PIL import Image

    init = np.zeros((32, 32, 3), np.uint8)
    init[:, :16] = (240, 220, 30)
    out = _run(runner, cond, [1], init_image=Image.fromarray(init), denoising_strength=0.05, steps=20)[0]
    assert np.abs(out.astype(int) - init).mean() < 12  # 5% noise barely changes it
    far = _run(runner, cond, [1], init_image=Image.fromarray(init), denoising_strength=1.0, steps=20)[0]
    assert np.abs(far.astype(int) - init).mean() > np.abs(out.astype(int) - init).mean()


@pytest.mark.parametrize(("steps", "strength", "as_if"), [(1, 0.75, 1.0), (20, 0.01, 0.05), (49, 0.001, 1 / 49)])
def test_img2img_too_weak_for_one_step_runs_one_step_as_a1111(runner, cond, steps, strength, as_if):
    """int(steps·strength) = 0 would run no step (diffusers fails); A1111 runs one from the last step's noise."""
    from PIL import Image

    init = Image.fromarray(np.full((32, 32, 3), 128, np.uint8))
    weak = _run(runner, cond, [2], init_image=init, denoising_strength=strength, steps=steps)[0]
    one_step = _run(runner, cond, [2], init_image=init, denoising_strength=min(1.0, as_if * 1.0001), steps=steps)[0]
    assert (weak == one_step).all()


def test_impossible_size(runner, cond):
    with pytest.raises(InvalidRequest, match="multiples of 8"):
        _run(runner, cond, [1], width=33)


def test_interrupt_stops_between_steps(runner, cond):
    job = Job()
    seen = []

    def progress(step, total):
        seen.append(step)
        if step == 2:
            job.interrupted.set()

    with pytest.raises(Cancelled):
        runner.run(
            cond,
            [1],
            steps=10,
            cfg_scale=5,
            sampler="Euler",
            schedule="Automatic",
            width=32,
            height=32,
            job=job,
            progress=progress,
        )
    assert seen == [1, 2]


def test_skip_drops_the_batch(runner, cond):
    job = Job()
    job.skipped.set()
    assert (
        runner.run(cond, [1], steps=4, cfg_scale=5, sampler="Euler", schedule="Automatic", width=32, height=32, job=job)
        is None
    )
    assert not job.skipped.is_set()
