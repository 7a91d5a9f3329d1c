"""A1111 sampler and schedule-type labels mapped onto diffusers schedulers.

The labels (and their legacy combined forms such as "DPM++ 2M Karras") are A1111's, from
``loradeck.prompt.samplers``. Here each label becomes a diffusers scheduler built from the
model's own noise schedule (beta range, prediction type), so the same sampler means the same maths on any model.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import diffusers

from loradeck.engine.sigmas import SIGMA_SCHEDULERS, SIGMA_SCHEDULES, install
from loradeck.errors import InvalidRequest
from loradeck.prompt.samplers import effective_schedule, resolve_sampler


@dataclass(frozen=True)
class SamplerSpec:
    cls: str
    options: dict[str, Any] = field(default_factory=dict)


_SDE = {"algorithm_type": "sde-dpmsolver++"}
SAMPLERS: dict[str, SamplerSpec] = {
    "DPM++ 2M": SamplerSpec("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPM++ SDE": SamplerSpec("DPMSolverSDEScheduler"),
    "DPM++ 2M SDE": SamplerSpec("DPMSolverMultistepScheduler", _SDE | {"solver_order": 2}),
    "DPM++ 2M SDE Heun": SamplerSpec("DPMSolverMultistepScheduler", _SDE | {"solver_order": 2, "solver_type": "heun"}),
    "DPM++ 3M SDE": SamplerSpec("DPMSolverMultistepScheduler", _SDE | {"solver_order": 3}),
    "Euler a": SamplerSpec("EulerAncestralDiscreteScheduler"),
    "Euler": SamplerSpec("EulerDiscreteScheduler"),
    "LMS": SamplerSpec("LMSDiscreteScheduler"),
    "Heun": SamplerSpec("HeunDiscreteScheduler"),
    "DPM2": SamplerSpec("KDPM2DiscreteScheduler"),
    "DPM2 a": SamplerSpec("KDPM2AncestralDiscreteScheduler"),
    "DDIM": SamplerSpec("DDIMScheduler", {"set_alpha_to_one": False}),
    "PLMS": SamplerSpec("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": SamplerSpec("UniPCMultistepScheduler"),
    "LCM": SamplerSpec("LCMScheduler"),
}

# Schedule type label → scheduler options ("Automatic" = the sampler's default, resolved before we get here).
SCHEDULES: dict[str, dict[str, Any]] = {
    "Automatic": {},
    "Uniform": {"timestep_spacing": "linspace"},
    "Karras": {"use_karras_sigmas": True},
    "Exponential": {"use_exponential_sigmas": True},
    "Beta": {"use_beta_sigmas": True},
    "SGM Uniform": {"timestep_spacing": "trailing"},
    "Simple": {"timestep_spacing": "trailing"},
    "Normal": {"timestep_spacing": "linspace"},
    "DDIM": {"timestep_spacing": "leading"},
    **{name: {} for name in SIGMA_SCHEDULES},  # lists of sigmas, installed after construction (engine.sigmas)
}


def resolve_sampler_schedule(sampler: str | None, schedule: str | None = None) -> tuple[str, str]:
    """(sampler label, effective schedule label) for names as users type them, legacy "DPM++ 2M Karras" included.

    "Automatic" becomes the sampler's default (DPM++ 2M → Karras), as A1111 writes it in the infotext.
    """
    label, sched = resolve_sampler(sampler or "Euler a", schedule)
    sched = effective_schedule(label, sched)
    if label not in SAMPLERS:
        raise InvalidRequest(f"Sampler {label!r} is not available in loradeck yet; available: {', '.join(SAMPLERS)}.")
    if sched not in SCHEDULES:
        raise InvalidRequest(
            f"Schedule type {sched!r} is not available in loradeck yet; available: {', '.join(SCHEDULES)}."
        )
    return label, sched


def make_scheduler(
    base_config: dict[str, Any], sampler: str, schedule: str, seeds: list[int] | None = None, sdxl: bool = False
):
    """A fresh diffusers scheduler for ``sampler``/``schedule`` on a model's noise schedule ``base_config``."""
    spec = SAMPLERS[sampler]
    cls = getattr(diffusers, spec.cls)
    accepted = set(inspect.signature(cls.__init__).parameters)
    options = dict(spec.options) | SCHEDULES[schedule]
    refused = [k for k in SCHEDULES[schedule] if k not in accepted]
    if refused or (schedule in SIGMA_SCHEDULES and spec.cls not in SIGMA_SCHEDULERS):
        raise InvalidRequest(f"Sampler {sampler!r} does not support the schedule type {schedule!r}.")
    if "noise_sampler_seed" in accepted and seeds is not None:
        options["noise_sampler_seed"] = seeds  # one Brownian tree per image, seeded like its image
    # Our models' configs set clip_sample/thresholding for their own reasons; keep only keys this class knows.
    config = {k: v for k, v in base_config.items() if k in accepted and not k.startswith("_")}
    scheduler = cls(**(config | options))
    if schedule in SIGMA_SCHEDULES:
        install(scheduler, schedule, sdxl)
    return scheduler
