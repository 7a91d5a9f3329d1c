"""A1111 sampler and schedule-type labels mapped onto diffusers schedulers.

The labels (and their legacy combined forms such as "DPM++ 2M Karras") are A1111's; see
``loradeck.prompt.samplers`` for the name table. Here each label becomes a diffusers scheduler built from the
model's own noise schedule (beta range, prediction type), so the same sampler means the same maths on any model.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import diffusers

from loradeck.errors import InvalidRequest


@dataclass(frozen=True)
class SamplerSpec:
    cls: str
    options: dict[str, Any] = field(default_factory=dict)
    default_schedule: str = "Automatic"  # A1111's per-sampler default, used for "Automatic"
    ancestral: bool = False  # draws fresh noise every step (needs per-image generators)


SAMPLERS: dict[str, SamplerSpec] = {
    "DPM++ 2M": SamplerSpec("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}, "Karras"),
    "DPM++ SDE": SamplerSpec("DPMSolverSDEScheduler", {}, "Karras", ancestral=True),
    "DPM++ 2M SDE": SamplerSpec(
        "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}, "Exponential", True
    ),
    "DPM++ 2M SDE Heun": SamplerSpec(
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "solver_type": "heun"},
        "Exponential",
        True,
    ),
    "DPM++ 3M SDE": SamplerSpec(
        "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}, "Exponential", True
    ),
    "Euler a": SamplerSpec("EulerAncestralDiscreteScheduler", {}, ancestral=True),
    "Euler": SamplerSpec("EulerDiscreteScheduler"),
    "LMS": SamplerSpec("LMSDiscreteScheduler"),
    "Heun": SamplerSpec("HeunDiscreteScheduler"),
    "DPM2": SamplerSpec("KDPM2DiscreteScheduler", {}, "Karras"),
    "DPM2 a": SamplerSpec("KDPM2AncestralDiscreteScheduler", {}, "Karras", ancestral=True),
    "DDIM": SamplerSpec("DDIMScheduler", {"set_alpha_to_one": False}),
    "PLMS": SamplerSpec("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": SamplerSpec("UniPCMultistepScheduler"),
    "LCM": SamplerSpec("LCMScheduler", {}, ancestral=True),
}

# Schedule type label → scheduler options. "Automatic" = the sampler's default, else the model's own spacing.
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
}
SCHEDULE_ALIASES = {"SGMUniform": "SGM Uniform"} | {k.lower().replace(" ", "_"): k for k in SCHEDULES}
SAMPLER_ALIASES = {
    "k_dpmpp_2m": "DPM++ 2M",
    "k_dpmpp_sde": "DPM++ SDE",
    "k_euler_a": "Euler a",
    "k_euler_ancestral": "Euler a",
    "k_euler": "Euler",
    "k_lms": "LMS",
    "k_heun": "Heun",
    "k_dpm_2": "DPM2",
    "k_dpm_2_a": "DPM2 a",
    "ddim": "DDIM",
    "plms": "PLMS",
    "unipc": "UniPC",
    "k_lcm": "LCM",
}


def resolve(sampler: str | None, schedule: str | None = None) -> tuple[str, str]:
    """(sampler label, schedule label) from what a user typed, including legacy names like "DPM++ 2M Karras".

    The returned schedule is the effective one: "Automatic" is replaced by the sampler's default, as A1111 writes it.
    """
    name = (sampler or "Euler a").strip()
    sched = (schedule or "Automatic").strip()
    sched = SCHEDULE_ALIASES.get(sched, SCHEDULE_ALIASES.get(sched.lower(), sched))
    if name not in SAMPLERS:
        name = SAMPLER_ALIASES.get(name, SAMPLER_ALIASES.get(name.lower(), name))
    if name not in SAMPLERS:
        for label in SCHEDULES:  # legacy "<sampler> <schedule>"
            if name.endswith(" " + label) and name[: -len(label) - 1] in SAMPLERS:
                name, sched = name[: -len(label) - 1], label
                break
    if name not in SAMPLERS:
        raise InvalidRequest(f"Unknown sampler {sampler!r}; valid samplers: {', '.join(SAMPLERS)}.")
    if sched not in SCHEDULES:
        raise InvalidRequest(f"Unknown schedule type {schedule!r}; valid schedule types: {', '.join(SCHEDULES)}.")
    if sched == "Automatic":
        sched = SAMPLERS[name].default_schedule
    return name, sched


def make_scheduler(base_config: dict[str, Any], sampler: str, schedule: str, seeds: list[int] | None = None):
    """A fresh diffusers scheduler for ``sampler``/``schedule`` on a model's noise schedule ``base_config``."""
    spec = SAMPLERS[sampler]
    cls = getattr(diffusers, spec.cls)
    accepted = set(inspect.signature(cls.__init__).parameters)
    options = dict(spec.options) | SCHEDULES[schedule]
    refused = [k for k in SCHEDULES[schedule] if k not in accepted]
    if refused:
        raise InvalidRequest(f"Sampler {sampler!r} does not support the schedule type {schedule!r}.")
    if "noise_sampler_seed" in accepted and seeds is not None:
        options["noise_sampler_seed"] = seeds  # one Brownian tree per image, seeded like its image
    # Our models' configs set clip_sample/thresholding for their own reasons; keep only keys this class knows.
    config = {k: v for k, v in base_config.items() if k in accepted and not k.startswith("_")}
    return cls(**(config | options))
