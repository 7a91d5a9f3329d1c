"""The noise side of a training step (docs/reference/kohya-training.md §3.4), as pure functions of (seed, step)."""

from __future__ import annotations

import torch


def noised(
    latents: torch.Tensor, scheduler, seed: int, step: int, noise_offset: float = 0.0, prediction: str = "epsilon"
):
    """(noisy latents, target, timesteps) for one step; the same (seed, step) always gives the same draw.

    ``noise_offset`` adds x·n with n ~ N(0, 1) per (sample, channel); the target is ε, or v for v-prediction.
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    noise = torch.randn(latents.shape, generator=gen)
    if noise_offset:
        noise = noise + noise_offset * torch.randn((*latents.shape[:2], 1, 1), generator=gen)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=gen)
    noisy = scheduler.add_noise(latents, noise, t)
    target = scheduler.get_velocity(latents, noise, t) if prediction == "v_prediction" else noise
    return noisy, target, t


def min_snr_weights(snr: torch.Tensor, gamma: float, prediction: str = "epsilon") -> torch.Tensor:
    """Min-SNR loss weights: min(SNR, γ)/SNR for ε-prediction, min(SNR, γ)/(SNR + 1) for v-prediction."""
    return torch.clamp(snr, max=gamma) / (snr + 1 if prediction == "v_prediction" else snr)
