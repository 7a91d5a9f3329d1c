"""The studio's hires fix: plan the second pass of a job (size, upscaler, sampler) and run it for one batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loradeck.engine.hires import LATENT_UPSCALERS, resolve_upscaler, target_size, upscale_latents, upscale_picture
from loradeck.errors import InvalidRequest
from loradeck.requests import GenerationRequest, HiresFix


@dataclass(frozen=True)
class HiresPlan:
    upscaler: str  # the one that will be used (an unknown name falls back to Lanczos)
    width: int
    height: int
    steps: int
    denoising_strength: float
    request: HiresFix  # what was asked (what the infotext records)
    sampler: tuple[str, str] | None = None  # (sampler, schedule) of the second pass; None: the first pass's
    models_root: Path | None = None  # <home>/models, where model upscalers (ESRGAN, …) live


def plan_hires(
    request: GenerationRequest,
    width: int,
    height: int,
    max_side: int,
    warnings: list[str],
    models_root: Path | None = None,
) -> HiresPlan | None:
    """The hires fix to run, or None (not asked, or img2img). A warning is added when the upscaler falls back."""
    hr = request.hires
    if hr is None or request.init_image is not None:
        return None
    from loradeck.engine.upscalers import find_model_upscalers

    models = find_model_upscalers(models_root) if models_root is not None else {}
    upscaler, warning = resolve_upscaler(hr.upscaler, models)
    if warning:
        warnings.append(warning)
    tw, th = target_size(width, height, hr.scale, hr.resize_x, hr.resize_y)
    if min(tw, th) < 8 or max(tw, th) > max_side:
        raise InvalidRequest(f"Hires fix size {tw}x{th} is not possible: each side must be 8 to {max_side}.")
    sampler = None
    if hr.sampler or hr.scheduler:  # A1111's "Hires sampler"; an unset one means the first pass's
        from loradeck.engine.schedulers import resolve

        sampler = resolve(hr.sampler or request.sampler, hr.scheduler or request.scheduler)
    return HiresPlan(upscaler, tw, th, hr.steps or request.steps, hr.denoising_strength, hr, sampler, models_root)


def hires_pass(
    runner: Any,
    request: GenerationRequest,
    hires: HiresPlan,
    cond: Any,
    seeds: list[int],
    first: Any,
    progress: Callable[[int, int], None],
    common: dict[str, Any],
) -> Any:
    """Upscale the first pass (latents or pictures) and redraw it at the target size (img2img, same seeds).

    Denoising strength 0 (A1111 accepts it) redraws nothing: the upscaled first pass is the answer."""
    if hires.upscaler in LATENT_UPSCALERS:
        init = upscale_latents(first, hires.width, hires.height, hires.upscaler, runner.c.vae_scale_factor)
        if hires.denoising_strength == 0:
            return _decode(runner, init)
    else:
        init = [upscale_picture(p, hires.width, hires.height, hires.upscaler, hires.models_root) for p in first]
        if hires.denoising_strength == 0:
            return init
    done = request.steps

    def second_progress(step: int, steps: int) -> None:
        progress(done + step, done + steps)

    if hires.sampler is not None:
        common = common | dict(sampler=hires.sampler[0], schedule=hires.sampler[1])
    return runner.run(
        cond,
        seeds,
        steps=hires.steps,
        width=hires.width,
        height=hires.height,
        init_image=init,
        denoising_strength=hires.denoising_strength,
        progress=second_progress,
        **common,
    )


def _decode(runner: Any, latents: Any) -> list:
    """Pictures from latents through the model's VAE, as the pipelines' last step does."""
    import torch

    pipe = runner.txt2img
    with torch.inference_mode():
        scaled = latents.to(runner.device, runner.dtype) / pipe.vae.config.scaling_factor
        images = pipe.vae.decode(scaled, return_dict=False)[0]
    return pipe.image_processor.postprocess(images, output_type="pil")
