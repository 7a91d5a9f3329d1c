"""The embedded demo model follows its prompts (issue 2): measured from pixels over 48 prompts and seeds."""

import numpy as np

from loradeck.demo.evaluate import evaluation_prompts, score
from loradeck.requests import GenerationRequest


def test_demo_model_follows_prompts(studio_demo):
    cases = evaluation_prompts(48)
    images = []
    for colour, shape, background, seed in cases:
        request = GenerationRequest(f"a {colour} {shape} on a {background} background", seed=seed, save=False)
        images.append(np.asarray(studio_demo.generate(request).images[0].image))
    result = score(cases, images)
    print(f"\ndemo model prompt following (Euler a, 20 steps, CFG 7): {result}")
    assert result.colours >= 0.90, result
    assert result.shapes >= 0.70, result


def test_judge_reads_drawn_scenes_exactly():
    """The judge itself is right on the pictures the training data is made of."""
    import random

    from loradeck.demo.shapes import judge, random_scene, render

    rng = random.Random(7)
    for _ in range(300):
        s = random_scene(rng)
        j = judge(render(s))
        assert (j.colour, j.background, j.shape) == (s.colour, s.background, s.shape)
