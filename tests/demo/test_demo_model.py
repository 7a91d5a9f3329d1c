"""The embedded demo model follows its prompts: measured from pixels over 48 prompts and seeds."""

import numpy as np
import torch

from loradeck.demo.evaluate import evaluation_prompts, score
from loradeck.engine.conditioning import Conditioning, encode_prompts
from loradeck.engine.schedulers import resolve_sampler_schedule as resolve


def test_demo_model_follows_prompts(studio_demo):
    """The studio's own model, runner and conditioning, batched 16 prompts at a time (each image its own seed)."""
    model = studio_demo.model
    sampler, schedule = resolve("Euler a")
    cases = evaluation_prompts(48)
    images = []
    for i in range(0, len(cases), 16):
        group = cases[i : i + 16]
        conds = [encode_prompts(model.base, f"a {c} {s} on a {b} background") for c, s, b, _ in group]
        cond = Conditioning(
            torch.cat([c.prompt_embeds for c in conds]), torch.cat([c.negative_prompt_embeds for c in conds])
        )
        seeds = [seed for *_, seed in group]
        pictures = model.runner.run(
            cond, seeds, steps=20, cfg_scale=7.0, sampler=sampler, schedule=schedule, width=32, height=32
        )
        images += [np.asarray(p) for p in pictures]
    result = score(cases, images)
    print(f"\ndemo model prompt following (Euler a, 20 steps, CFG 7): {result}")
    assert result.colours >= 0.90, result
    assert result.shapes >= 0.70, result


def test_batched_evaluation_equals_the_cli_path(studio_demo):
    """The batched run above draws what `loradeck generate` draws for the same prompt and seed."""
    from loradeck.vocab import GenerationRequest

    colour, shape, background, seed = evaluation_prompts(1)[0]
    prompt = f"a {colour} {shape} on a {background} background"
    alone = np.asarray(studio_demo.generate(GenerationRequest(prompt, seed=seed, save=False)).images[0].image)
    model = studio_demo.model
    cond = encode_prompts(model.base, prompt)
    batched = model.runner.run(cond, [seed], steps=20, cfg_scale=7.0, sampler="Euler a", schedule="Automatic",
                               width=32, height=32)[0]  # fmt: skip
    assert (np.asarray(batched) == alone).all()


def test_judge_reads_drawn_scenes_exactly():
    """The judge itself is right on the pictures the training data is made of."""
    import random

    from loradeck.demo.shapes import judge, random_scene, render

    rng = random.Random(7)
    for _ in range(300):
        s = random_scene(rng)
        j = judge(render(s))
        assert (j.colour, j.background, j.shape) == (s.colour, s.background, s.shape)
