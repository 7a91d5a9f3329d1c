"""A1111's sampler and schedule-type names: labels, aliases, defaults, and the pre-1.9 combined names.

Pure data and lookups. Mapping a label onto a diffusers scheduler is ``loradeck.engine.schedulers``' job.
"""

from __future__ import annotations

from dataclasses import dataclass

from loradeck.errors import InvalidRequest

AUTOMATIC = "Automatic"


@dataclass(frozen=True)
class SamplerName:
    label: str  # what A1111 shows and writes in the infotext
    aliases: tuple[str, ...] = ()
    default_schedule: str | None = None  # schedule *name* that "Automatic" means; None = the model's own sigmas
    timestep: bool = False  # DDIM/PLMS/UniPC family: works on timesteps, not a sigma schedule


@dataclass(frozen=True)
class ScheduleName:
    label: str
    name: str
    aliases: tuple[str, ...] = ()


# Order is A1111's (the first one is the UI default).
SAMPLERS: tuple[SamplerName, ...] = (
    SamplerName("DPM++ 2M", ("k_dpmpp_2m",), "karras"),
    SamplerName("DPM++ SDE", ("k_dpmpp_sde",), "karras"),
    SamplerName("DPM++ 2M SDE", ("k_dpmpp_2m_sde",), "exponential"),
    SamplerName("DPM++ 2M SDE Heun", ("k_dpmpp_2m_sde_heun",), "exponential"),
    SamplerName("DPM++ 2S a", ("k_dpmpp_2s_a",), "karras"),
    SamplerName("DPM++ 3M SDE", ("k_dpmpp_3m_sde",), "exponential"),
    SamplerName("Euler a", ("k_euler_a", "k_euler_ancestral")),
    SamplerName("Euler", ("k_euler",)),
    SamplerName("LMS", ("k_lms",)),
    SamplerName("Heun", ("k_heun",)),
    SamplerName("DPM2", ("k_dpm_2",), "karras"),
    SamplerName("DPM2 a", ("k_dpm_2_a",), "karras"),
    SamplerName("DPM fast", ("k_dpm_fast",)),
    SamplerName("DPM adaptive", ("k_dpm_ad",)),
    SamplerName("Restart", ("restart",), "karras"),
    SamplerName("DDIM", ("ddim",), timestep=True),
    SamplerName("DDIM CFG++", ("ddim_cfgpp",), timestep=True),
    SamplerName("PLMS", ("plms",), timestep=True),
    SamplerName("UniPC", ("unipc",), timestep=True),
    SamplerName("LCM", ("k_lcm",)),
)

SCHEDULES: tuple[ScheduleName, ...] = (
    ScheduleName(AUTOMATIC, "automatic"),
    ScheduleName("Uniform", "uniform"),
    ScheduleName("Karras", "karras"),
    ScheduleName("Exponential", "exponential"),
    ScheduleName("Polyexponential", "polyexponential"),
    ScheduleName("SGM Uniform", "sgm_uniform", ("SGMUniform",)),
    ScheduleName("KL Optimal", "kl_optimal"),
    ScheduleName("Align Your Steps", "align_your_steps"),
    ScheduleName("Simple", "simple"),
    ScheduleName("Normal", "normal"),
    ScheduleName("DDIM", "ddim"),
    ScheduleName("Beta", "beta"),
)

SAMPLER_LABELS: tuple[str, ...] = tuple(s.label for s in SAMPLERS)
SCHEDULE_LABELS: tuple[str, ...] = tuple(s.label for s in SCHEDULES)

# Case-insensitive lookup tables (A1111 is case-sensitive for labels, lenient for aliases; we accept both).
_SAMPLER_BY_KEY = {k.lower(): s for s in SAMPLERS for k in (s.label, *s.aliases)}
_SCHEDULE_BY_KEY = {k.lower(): s for s in SCHEDULES for k in (s.label, s.name, *s.aliases)}
_LEGACY_SUFFIXES = sorted(_SCHEDULE_BY_KEY.items(), key=lambda kv: -len(kv[0]))


def find_sampler(name: str) -> SamplerName | None:
    """The sampler with this label or alias (any case), or None."""
    return _SAMPLER_BY_KEY.get(name.strip().lower())


def find_schedule(name: str) -> ScheduleName | None:
    """The schedule type with this label, name or alias (any case), or None."""
    return _SCHEDULE_BY_KEY.get(name.strip().lower())


def split_legacy_name(name: str) -> tuple[str, str | None]:
    """``"DPM++ 2M Karras"`` → ``("DPM++ 2M", "Karras")``: strip a trailing space + schedule label/name (A1111 1.9 rule).

    A name that is already a sampler is left whole, so ``"DDIM"`` stays a sampler and is never read as a schedule.
    """
    name = name.strip()
    if find_sampler(name) is not None:
        return name, None
    lowered = name.lower()
    # Longest option first, so "... SGM Uniform" is not read as "... SGM" + "Uniform" (A1111 tries them in table order).
    for option, schedule in _LEGACY_SUFFIXES:
        if lowered.endswith(" " + option):
            return name[: -len(option) - 1].rstrip(), schedule.label
    return name, None


def resolve_sampler(
    name: str | None, scheduler: str | None = None, *, convert_automatic: bool = False
) -> tuple[str, str]:
    """(sampler label, schedule label) for a sampler name (label, alias or legacy combined) and a schedule type.

    ``None``/empty sampler means A1111's default (``DPM++ 2M``); ``None``/empty schedule means ``Automatic``. A schedule
    found in a legacy combined name wins over ``scheduler``, as in A1111. With ``convert_automatic`` a schedule equal to
    the sampler's default is reported as ``Automatic`` (what A1111's paste does). Unknown names raise InvalidRequest.
    """
    base, legacy_schedule = split_legacy_name(name) if name and name.strip() else (SAMPLERS[0].label, None)
    sampler = find_sampler(base)
    if sampler is None:
        raise InvalidRequest(f"Unknown sampler '{name}'; valid samplers are: {', '.join(SAMPLER_LABELS)}.")
    if legacy_schedule is not None:
        schedule_label = legacy_schedule
    elif scheduler and scheduler.strip():
        found = find_schedule(scheduler)
        if found is None:
            raise InvalidRequest(
                f"Unknown schedule type '{scheduler}'; valid schedule types are: {', '.join(SCHEDULE_LABELS)}."
            )
        schedule_label = found.label
    else:
        schedule_label = AUTOMATIC
    if convert_automatic and sampler.default_schedule is not None:
        default = find_schedule(sampler.default_schedule)
        if default is not None and default.label == schedule_label:
            schedule_label = AUTOMATIC
    return sampler.label, schedule_label


def effective_schedule(sampler_label: str, schedule_label: str) -> str:
    """The schedule label A1111 writes in the infotext: ``Automatic`` becomes the sampler's default, if it has one.

    (DPM++ 2M + Automatic → ``Karras``; Euler a + Automatic → stays ``Automatic``.)
    """
    if schedule_label != AUTOMATIC:
        return schedule_label
    sampler = find_sampler(sampler_label)
    if sampler is None or sampler.default_schedule is None:
        return AUTOMATIC
    default = find_schedule(sampler.default_schedule)
    return default.label if default is not None else AUTOMATIC
