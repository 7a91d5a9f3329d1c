"""What the engine can run, by A1111's names: the lists interfaces offer (dropdowns, ``/sdapi/v1/samplers``…)."""

from __future__ import annotations

from pathlib import Path

from loradeck.engine.hires import LATENT_UPSCALERS, PIXEL_UPSCALERS
from loradeck.engine.inpaint import FILLS
from loradeck.engine.schedulers import SAMPLERS, SCHEDULES
from loradeck.engine.upscalers import ModelUpscaler, find_model_upscalers
from loradeck.prompt.samplers import SAMPLERS as SAMPLER_INFO
from loradeck.prompt.samplers import SCHEDULES as SCHEDULE_INFO
from loradeck.prompt.samplers import SamplerName, ScheduleName


def sampler_names() -> list[str]:
    return list(SAMPLERS)


def schedule_names() -> list[str]:
    return list(SCHEDULES)


def samplers() -> list[SamplerName]:
    """The A1111 samplers loradeck runs, in A1111's order."""
    return [s for s in SAMPLER_INFO if s.label in SAMPLERS]


def schedules() -> list[ScheduleName]:
    return [s for s in SCHEDULE_INFO if s.label in SCHEDULES]


def latent_upscalers() -> list[str]:
    return list(LATENT_UPSCALERS)


def hires_upscalers() -> list[str]:
    """The hires fix's upscalers: the latent modes, then the picture resamplers."""
    return [*LATENT_UPSCALERS, *PIXEL_UPSCALERS]


INPAINT_FILLS = FILLS  # A1111's inpainting_fill: number → name ("fill", "original", "latent noise", "latent nothing")


def model_upscalers(models_root: Path) -> dict[str, ModelUpscaler]:
    """The model upscaler files (ESRGAN, RealESRGAN, SwinIR, …) in A1111's folders under ``models_root``."""
    return find_model_upscalers(models_root)
