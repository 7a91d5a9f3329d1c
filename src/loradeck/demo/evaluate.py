"""How well the demo model follows its prompts, judged from pixels (`loradeck.demo.shapes.judge`)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from loradeck.demo.shapes import COLOURS, SHAPES, judge


@dataclass(frozen=True)
class PromptFollowing:
    samples: int
    colours: float  # share with shape colour and background colour both right
    shapes: float  # share with the shape right
    both: float

    def __str__(self) -> str:
        return (
            f"{self.samples} samples: colours right {self.colours:.0%}, shape right {self.shapes:.0%}, "
            f"all right {self.both:.0%}"
        )


def evaluation_prompts(n: int = 48, seed: int = 123) -> list[tuple[str, str, str, int]]:
    """(colour, shape, background, image seed) for n prompts covering the demo world."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        colour, background = rng.sample(COLOURS, 2)
        out.append((colour, SHAPES[i % len(SHAPES)], background, 1000 + i))
    return out


def score(cases: list[tuple[str, str, str, int]], images: list[np.ndarray]) -> PromptFollowing:
    colours = shapes = both = 0
    for (colour, shape, background, _seed), image in zip(cases, images, strict=True):
        j = judge(image)
        c = j.colour == colour and j.background == background
        s = j.shape == shape
        colours += c
        shapes += s
        both += c and s
    n = len(cases)
    return PromptFollowing(n, colours / n, shapes / n, both / n)
