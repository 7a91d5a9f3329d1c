"""The little world the demo model knows: coloured shapes on coloured backgrounds.

Used to draw training pictures and, the other way round, to judge whether a generated picture shows what its
prompt asked for (pixel statistics only, no learnt classifier).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "orange": (245, 140, 20),
    "purple": (140, 40, 180),
}
COLOURS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle")


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    background: str
    cx: float  # centre, in pixels
    cy: float
    radius: float  # half the size, in pixels

    @property
    def caption(self) -> str:
        return f"a {self.colour} {self.shape} on a {self.background} background"


def random_scene(rng: random.Random, size: int = 32) -> Scene:
    colour, background = rng.sample(COLOURS, 2)
    radius = rng.uniform(0.17, 0.32) * size
    cx = rng.uniform(radius + 1, size - radius - 1)
    cy = rng.uniform(radius + 1, size - radius - 1)
    return Scene(rng.choice(SHAPES), colour, background, cx, cy, radius)


def shape_mask(shape: str, cx: float, cy: float, radius: float, size: int) -> np.ndarray:
    """Boolean mask of the shape, sampled at pixel centres."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx, dy = x - cx, y - cy
    if shape == "circle":
        return dx * dx + dy * dy <= radius * radius
    if shape == "square":
        half = radius * 0.886  # same area as the circle
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if shape == "triangle":  # upright, apex at the top
        h = radius * 2.0
        top, bottom = cy - h / 2, cy + h / 2
        frac = np.clip((y - top) / h, 0, 1)
        return (y >= top) & (y <= bottom) & (np.abs(dx) <= frac * radius * 1.15)
    raise ValueError(f"unknown shape {shape!r}")


def render(scene: Scene, size: int = 32) -> np.ndarray:
    """uint8 HxWx3 picture of a scene."""
    img = np.empty((size, size, 3), np.uint8)
    img[:] = PALETTE[scene.background]
    img[shape_mask(scene.shape, scene.cx, scene.cy, scene.radius, size)] = PALETTE[scene.colour]
    return img


def nearest_colour(rgb: np.ndarray) -> str:
    table = np.array(list(PALETTE.values()), np.float32)
    return COLOURS[int(np.argmin(((table - rgb.astype(np.float32)) ** 2).sum(1)))]


@dataclass(frozen=True)
class Judgement:
    colour: str | None
    background: str
    shape: str | None


def judge(img: np.ndarray) -> Judgement:
    """Read colour, background and shape back from a picture (uint8 HxWx3).

    Background = the palette colour nearest the median of the border; the shape = pixels far from the background
    colour; its kind from how much of its bounding box it fills (square ≈ 1, circle ≈ π/4, triangle ≈ 1/2).
    """
    img = img.astype(np.float32)
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    background = nearest_colour(np.median(border, axis=0))
    bg = np.array(PALETTE[background], np.float32)
    far = np.sqrt(((img - bg) ** 2).sum(-1)) > 80
    if far.sum() < 6:
        return Judgement(None, background, None)
    colour = nearest_colour(np.median(img[far], axis=0))
    ys, xs = np.nonzero(far)
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    fill = far.sum() / box
    shape = "square" if fill > 0.88 else "circle" if fill > 0.64 else "triangle"
    return Judgement(colour, background, shape)
