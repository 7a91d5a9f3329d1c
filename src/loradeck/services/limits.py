"""The one check of a generation request: run once, when the job is planned, whichever interface sent it, so a
client gets its sentence at once (422 over HTTP) and never after waiting in the queue. Sizes, steps, batches and prompt
lengths come from ``Settings.limits`` (the UI's sliders read the same); every other bound is in the table below."""

from __future__ import annotations

import math

from loradeck.errors import InvalidRequest
from loradeck.settings import Limits
from loradeck.vocab import GenerationRequest

SEED_RANGE = (-1, 2**64 - 1)  # -1 = random; torch's generator takes any 64-bit unsigned seed (ComfyUI's too)
CFG_SCALE_RANGE = (0.0, 100.0)  # A1111's slider stops at 30; far beyond 100 the picture is only noise or black
STRENGTH_RANGE = (0.0, 1.0)  # variation strength (subseed_strength), denoising strength
HR_SCALE_RANGE = (0.0, 16.0)  # the hires target must also fit Limits.max_side
CLIP_SKIP_RANGE = (1, 12)  # A1111's slider (CLIP_stop_at_last_layers)


def _in(name: str, value: float, bounds: tuple[float, float]) -> None:
    lo, hi = bounds
    if not (isinstance(value, int | float) and math.isfinite(value) and lo <= value <= hi):
        raise InvalidRequest(f"{name} must be between {lo:g} and {hi:g}, not {value}.")


def check_seed(name: str, seed: int, pictures: int = 1) -> None:
    """-1 (random) or a seed whose last picture's seed (seed + pictures - 1) still fits SEED_RANGE."""
    lo, hi = SEED_RANGE
    if not (seed == lo or 0 <= seed <= hi - max(0, pictures - 1)):
        raise InvalidRequest(f"{name} must be -1 (random) or a whole number from 0 to {hi}, not {seed}.")


def check_request(request: GenerationRequest, limits: Limits) -> None:
    """Raise InvalidRequest (one sentence) when the request is over a limit or impossible."""
    for label, text in (("prompt", request.prompt), ("negative prompt", request.negative_prompt)):
        if len(text) > limits.max_prompt_chars:
            raise InvalidRequest(f"The {label} has {len(text)} characters; the limit is {limits.max_prompt_chars}.")
    for side_name, side in (("width", request.width), ("height", request.height)):
        if side is not None and not (8 <= side <= limits.max_side and side % 8 == 0):
            raise InvalidRequest(
                f"The {side_name} {side} is not possible: each side must be a multiple of 8 between 8 and "
                f"{limits.max_side}."
            )
    if not 1 <= request.steps <= limits.max_steps:
        raise InvalidRequest(f"Steps must be between 1 and {limits.max_steps}, not {request.steps}.")
    if not 1 <= request.batch_size <= limits.max_batch:
        raise InvalidRequest(f"The batch size must be between 1 and {limits.max_batch}, not {request.batch_size}.")
    if not 1 <= request.batch_count <= limits.max_batch_count:
        raise InvalidRequest(
            f"The batch count n_iter must be between 1 and {limits.max_batch_count}, not {request.batch_count}."
        )
    pictures = request.batch_size * request.batch_count
    check_seed("The seed", request.seed, pictures)
    check_seed("The variation seed (subseed)", request.variation_seed, pictures)
    _in("The CFG scale", request.cfg_scale, CFG_SCALE_RANGE)
    _in("The variation strength (subseed_strength)", request.variation_strength, STRENGTH_RANGE)
    _in("The denoising strength", request.denoising_strength, STRENGTH_RANGE)
    _in("The CLIP skip (CLIP_stop_at_last_layers)", request.clip_skip, CLIP_SKIP_RANGE)
    if request.init_image is not None and request.denoising_strength <= 0.0:
        raise InvalidRequest(f"Denoising strength must be in (0, 1], not {request.denoising_strength}.")
    hr = request.hires
    if hr is not None and request.init_image is None:
        _in("The hires scale (hr_scale)", hr.scale, HR_SCALE_RANGE)
        _in("The hires denoising strength", hr.denoising_strength, STRENGTH_RANGE)
        _in("The hires steps (hr_second_pass_steps)", hr.steps, (0, limits.max_steps))


def check_hires_size(width: int, height: int, limits: Limits) -> None:
    if min(width, height) < 8 or max(width, height) > limits.max_side:
        raise InvalidRequest(
            f"Hires fix size {width}x{height} is not possible: each side must be 8 to {limits.max_side}."
        )
