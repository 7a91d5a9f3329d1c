"""A1111's hires fix: upscale the first pass (latents or picture) and redraw it with img2img at the larger size.

Upscalers by their A1111 names: the latent ones interpolate the first pass's latents; "Lanczos" and "Nearest" resize
the decoded picture; model upscalers (ESRGAN, 4x-UltraSharp, SwinIR, … files under ``<home>/models``) run through
``engine.upscalers``. A name that is none of these falls back to Lanczos with a warning, and the infotext records
what was used.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from PIL import Image

from loradeck.engine.upscalers import PIXEL_UPSCALERS

LATENT_UPSCALERS = {  # name → (interpolation mode, antialias), as A1111's shared.latent_upscale_modes
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
FALLBACK = "Lanczos"

if TYPE_CHECKING:
    from loradeck.engine.pipeline import Runner


def target_size(width: int, height: int, scale: float, resize_x: int = 0, resize_y: int = 0) -> tuple[int, int]:
    """The second pass's size as A1111 computes it (scale, or a resize keeping the aspect when one side is 0),
    rounded down to a multiple of 8."""
    if resize_x == 0 and resize_y == 0:
        w, h = int(width * scale), int(height * scale)
    elif resize_y == 0:
        w, h = resize_x, resize_x * height // width
    elif resize_x == 0:
        w, h = resize_y * width // height, resize_y
    else:
        w, h = resize_x, resize_y
    return w // 8 * 8, h // 8 * 8


def resolve_upscaler(name: str | None, model_names=()) -> tuple[str, str | None]:
    """(the upscaler that will be used, a warning or None). None → "Latent", A1111's default; ``model_names``:
    the model upscalers found on disk."""
    name = name or "Latent"
    if name in LATENT_UPSCALERS or name in PIXEL_UPSCALERS or name in model_names:
        return name, None
    return FALLBACK, f"Hires upscaler {name} is not available in loradeck; {FALLBACK} was used instead."


def upscale_latents(latents: torch.Tensor, width: int, height: int, name: str, scale_factor: int) -> torch.Tensor:
    mode, antialias = LATENT_UPSCALERS[name]
    size = (height // scale_factor, width // scale_factor)
    return F.interpolate(latents.float(), size=size, mode=mode, antialias=antialias).to(latents.dtype)


def upscale_picture(picture: Image.Image, width: int, height: int, name: str, models_root=None) -> Image.Image:
    if name in PIXEL_UPSCALERS or models_root is None:
        return picture.resize((width, height), PIXEL_UPSCALERS.get(name, PIXEL_UPSCALERS[FALLBACK]))
    from loradeck.engine.upscalers import upscale

    return upscale(picture, width, height, name, models_root)


def hires_pass(
    runner: Runner,
    first: list[Image.Image] | torch.Tensor,
    seeds: list[int],
    *,
    upscaler: str,
    models_root: Path | None,
    width: int,
    height: int,
    steps: int,
    denoising_strength: float,
    first_steps: int,
    progress: Callable[[int, int], None] | None,
    **run_args: Any,
) -> list[Image.Image] | torch.Tensor | None:
    """Upscale the first pass (latents or pictures) to width x height and redraw it there (img2img, same seeds).
    Progress counts on from the first pass's ``first_steps``; ``run_args`` are the first pass's ``Runner.run``
    arguments (conditioning, sampler, cfg, job…), with the second pass's sampler where one was chosen.

    Denoising strength 0 (A1111 accepts it) redraws nothing: the upscaled first pass is the answer."""
    if upscaler in LATENT_UPSCALERS:
        assert isinstance(first, torch.Tensor)
        init: list[Image.Image] | torch.Tensor = upscale_latents(
            first, width, height, upscaler, runner.c.vae_scale_factor
        )
        if denoising_strength == 0:
            return _decode(runner, init)
    else:
        assert isinstance(first, list)
        init = [upscale_picture(p, width, height, upscaler, models_root) for p in first]
        if denoising_strength == 0:
            return init

    def second_progress(step: int, total: int) -> None:
        if progress:
            progress(first_steps + step, first_steps + total)

    return runner.run(
        seeds=seeds,
        steps=steps,
        width=width,
        height=height,
        init_image=init,
        denoising_strength=denoising_strength,
        progress=second_progress,
        **run_args,
    )


def _decode(runner: Runner, latents: torch.Tensor) -> list[Image.Image]:
    """Pictures from latents through the model's VAE, as the pipelines' last step does."""
    pipe: Any = runner.txt2img
    with torch.inference_mode():
        scaled = latents.to(runner.device, runner.dtype) / pipe.vae.config.scaling_factor
        images = pipe.vae.decode(scaled, return_dict=False)[0]
    return pipe.image_processor.postprocess(images, output_type="pil")
