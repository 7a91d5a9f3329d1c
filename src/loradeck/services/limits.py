"""The one check of a generation request against ``Settings.limits``: run once, when the job is planned, so a
client gets its sentence at once (422 over HTTP) and never after waiting in the queue. The UI's sliders read their
bounds from the same ``Limits``."""

from __future__ import annotations

from loradeck.errors import InvalidRequest
from loradeck.settings import Limits
from loradeck.vocab import GenerationRequest


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
            f"The batch count must be between 1 and {limits.max_batch_count}, not {request.batch_count}."
        )
    if not 0.0 <= request.variation_strength <= 1.0:
        raise InvalidRequest(f"Variation strength must be between 0 and 1, not {request.variation_strength}.")
    if request.init_image is not None and not 0.0 < request.denoising_strength <= 1.0:
        raise InvalidRequest(f"Denoising strength must be in (0, 1], not {request.denoising_strength}.")
    hr = request.hires
    if hr is not None and request.init_image is None:
        if not 0.0 < hr.denoising_strength <= 1.0:
            raise InvalidRequest(f"Hires denoising strength must be in (0, 1], not {hr.denoising_strength}.")
        if not 0 <= hr.steps <= limits.max_steps:
            raise InvalidRequest(f"Hires steps must be between 0 and {limits.max_steps}, not {hr.steps}.")


def check_hires_size(width: int, height: int, limits: Limits) -> None:
    if min(width, height) < 8 or max(width, height) > limits.max_side:
        raise InvalidRequest(
            f"Hires fix size {width}x{height} is not possible: each side must be 8 to {limits.max_side}."
        )
