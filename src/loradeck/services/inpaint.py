"""The inpainting pass of a generation: mask, working picture ("only masked" crop, fill), sampling, paste back, infotext."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loradeck.engine.inpaint import FILLS, prepare_mask, put_back, working_init
from loradeck.errors import InvalidRequest
from loradeck.vocab import GenerationRequest, Inpaint


def check_inpaint(spec: Inpaint) -> None:
    if spec.fill not in FILLS:
        raise InvalidRequest(f"inpainting_fill must be one of {sorted(FILLS)} ({', '.join(FILLS.values())}).")
    if not 0 <= spec.blur <= 64 or not 0 <= spec.padding <= 256:
        raise InvalidRequest("mask_blur must be 0 to 64 and inpaint_full_res_padding 0 to 256 pixels.")


def inpaint_pass(
    runner: Any,
    request: GenerationRequest,
    width: int,
    height: int,
    seeds: list[int],
    progress: Callable[[int, int], None],
    common: dict[str, Any],
) -> list | None:
    """One batch of an inpainting job: pictures the init picture's size, unchanged outside the (blurred) mask."""
    spec = request.inpaint
    assert spec is not None and request.init_image is not None
    check_inpaint(spec)
    init = request.init_image.convert("RGB")
    mask = prepare_mask(spec.mask, init.size, spec.invert, spec.blur)
    work = working_init(init, mask, width, height, spec.full_res, spec.padding, spec.fill)
    pictures = runner.run(
        seeds=seeds,
        steps=request.steps,
        width=width,
        height=height,
        init_image=work.image,
        denoising_strength=request.denoising_strength,
        progress=progress,
        inpaint=(work.mask, spec.fill),
        noise_multiplier=request.noise_multiplier,
        **common,
    )
    if pictures is None:
        return None
    return [put_back(p, init, mask, work.box) for p in pictures]


def inpaint_infotext(spec: Inpaint | None) -> dict[str, Any]:
    """A1111's infotext fields of an inpainting job."""
    if spec is None:
        return {}
    return {
        "Mask blur": spec.blur,
        "Inpaint area": "Only masked" if spec.full_res else None,
        "Masked area padding": spec.padding if spec.full_res else None,
        "Mask mode": "Inpaint not masked" if spec.invert else None,
        "Masked content": FILLS.get(spec.fill),
    }
