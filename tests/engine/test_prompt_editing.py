"""Prompt editing during sampling: each step draws the text A1111 would use at that step (demo model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loradeck.services.studio import Studio
from loradeck.vocab import GenerationRequest

RED = "a red circle on a blue background"
GREEN = "a green square on a yellow background"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    studio = Studio(home=tmp_path_factory.mktemp("home"))

    def draw(prompt: str, negative: str = ""):
        latents: list[torch.Tensor] = []
        studio._keep_latents = lambda x: latents.append(x.clone())  # the latents after each step
        request = GenerationRequest(prompt, negative_prompt=negative, seed=3, steps=6, sampler="Euler", save=False)
        result = studio.generate(request)
        return latents, np.asarray(result.images[0].image), result.images[0].infotext

    return draw


def test_edit_switches_after_the_a1111_step(run):
    red, red_img, _ = run(RED)
    green, green_img, _ = run(GREEN)
    edited, edited_img, infotext = run(f"[{RED}:{GREEN}:2]")
    assert all(torch.equal(edited[s], red[s]) for s in range(3))  # steps 0, 1, 2 draw the first text
    assert not torch.equal(edited[3], red[3])  # step 3 draws the second
    assert not (edited_img == red_img).all() and not (edited_img == green_img).all()
    assert infotext.startswith(f"[{RED}:{GREEN}:2]")  # the prompt is recorded as written, as A1111 does


def test_alternation_and_negative_schedules(run):
    red, _, _ = run(RED)
    alternating, _, _ = run(f"[{RED}|{GREEN}]")
    assert torch.equal(alternating[1], red[1]) and not torch.equal(alternating[2], red[2])  # A1111: a, a, b, a, …
    plain_neg, _, _ = run(RED, negative="green")
    edited_neg, _, _ = run(RED, negative="[green:yellow:0.5]")  # 0.5 of 6 steps: steps 0–3 use "green"
    assert all(torch.equal(edited_neg[s], plain_neg[s]) for s in range(4))
    assert not torch.equal(edited_neg[4], plain_neg[4])


def test_edit_that_never_fires_is_the_plain_prompt(run):
    red, red_img, _ = run(RED)
    later, later_img, _ = run(f"[{RED}:{GREEN}:99]")  # capped at the step count: never switches
    assert all(torch.equal(a, b) for a, b in zip(red, later, strict=True)) and (red_img == later_img).all()


def test_sdxl_edits_switch_at_the_same_step(tmp_path):
    from tests.helpers.checkpoints import write_checkpoint, write_tokenizer

    models = tmp_path / "models"
    models.mkdir()
    write_checkpoint(models / "xl.safetensors", "sdxl", seed=1)
    studio = Studio(home=tmp_path / "home", models_dir=models, tokenizer_dir=write_tokenizer(tmp_path / "tok"))

    def draw(prompt: str) -> list[torch.Tensor]:
        latents: list[torch.Tensor] = []
        studio._keep_latents = lambda x: latents.append(x.clone())
        request = GenerationRequest(
            prompt, seed=2, steps=4, width=64, height=64, sampler="Euler", checkpoint="xl.safetensors", save=False
        )
        studio.generate(request)
        return latents

    red, edited = draw("a red circle"), draw("[a red circle:a green square:1]")
    assert all(torch.equal(edited[s], red[s]) for s in range(2)) and not torch.equal(edited[2], red[2])
