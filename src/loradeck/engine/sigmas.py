"""Schedule types that are a list of sigmas rather than a diffusers option: Align Your Steps, KL Optimal,
Polyexponential (A1111's names and formulas).

Each gives ``n`` sigmas from ``sigma_max`` down, then 0. ``install`` makes a diffusers scheduler use them: after its
own ``set_timesteps`` it takes our sigmas and the matching timesteps (log-sigma interpolation on the model's noise
schedule). Only schedulers that step through one sigma per step can take them (Euler, Euler a, DPM++ 2M/SDE/3M SDE,
LMS); Heun, DPM2 and DPM++ SDE interleave extra sigmas and are refused, as are the timestep samplers (DDIM, PLMS,
UniPC).
"""

from __future__ import annotations

import math

import numpy as np
import torch

# NVIDIA's Align Your Steps sigmas for 10 steps (research.nvidia.com/labs/toronto-ai/AlignYourSteps/howto.html)
AYS_SD1 = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
AYS_SDXL = (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029)

SIGMA_SCHEDULERS = (
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "LMSDiscreteScheduler",
)


def align_your_steps(n: int, sigma_min: float, sigma_max: float, sdxl: bool = False) -> np.ndarray:
    """NVIDIA's list, log-linearly resampled to ``n`` sigmas when ``n`` is not its length (their how-to)."""
    table = np.array(AYS_SDXL if sdxl else AYS_SD1)
    if n != len(table):
        xs = np.linspace(0, 1, len(table))
        table = np.exp(np.interp(np.linspace(0, 1, n), xs, np.log(table[::-1])))[::-1]
    return np.append(table, 0.0)


def kl_optimal(n: int, sigma_min: float, sigma_max: float, sdxl: bool = False) -> np.ndarray:
    """σ_i = tan((1 − t_i)·atan σ_max + t_i·atan σ_min), t_i = i/(n − 1)."""
    t = np.linspace(0, 1, n)
    return np.append(np.tan(t * math.atan(sigma_min) + (1 - t) * math.atan(sigma_max)), 0.0)


def polyexponential(n: int, sigma_min: float, sigma_max: float, sdxl: bool = False, rho: float = 1.0) -> np.ndarray:
    """k-diffusion's: exp of a ρ-curved ramp from log σ_max to log σ_min (ρ = 1, A1111's default)."""
    ramp = np.linspace(1, 0, n) ** rho
    return np.append(np.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)), 0.0)


SIGMA_SCHEDULES = {"Align Your Steps": align_your_steps, "KL Optimal": kl_optimal, "Polyexponential": polyexponential}


def install(scheduler, schedule: str, sdxl: bool) -> None:
    """Make ``scheduler`` use ``schedule``'s sigmas from its next ``set_timesteps`` on."""
    make = SIGMA_SCHEDULES[schedule]
    own_set_timesteps = scheduler.set_timesteps
    alphas = scheduler.alphas_cumprod.double().numpy()
    model_sigmas = ((1 - alphas) / alphas) ** 0.5
    log_sigmas = np.log(model_sigmas)

    def set_timesteps(num_inference_steps=None, device=None, **kwargs):
        own_set_timesteps(num_inference_steps, device=device, **kwargs)
        n = num_inference_steps
        sigmas = make(n, float(model_sigmas[0]), float(model_sigmas[-1]), sdxl)
        timesteps = np.interp(np.log(sigmas[:-1]), log_sigmas, np.arange(len(log_sigmas)))
        scheduler.sigmas = torch.from_numpy(sigmas).float()
        scheduler.timesteps = torch.from_numpy(timesteps).float().to(device)
        scheduler.num_inference_steps = n

    scheduler.set_timesteps = set_timesteps
