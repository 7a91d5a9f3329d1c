"""The noise side of a training step (docs/reference/kohya-training.md §3.4), as pure functions of (seed, step)."""

from __future__ import annotations

import torch


def noised(
    latents: torch.Tensor,
    scheduler,
    seed: int,
    step: int,
    noise_offset: float = 0.0,
    prediction: str = "epsilon",
    rows: list[int] | None = None,
    total: int | None = None,
):
    """(noisy latents, target, timesteps) for one step; the same (seed, step) always gives the same draw.

    ``noise_offset`` adds x·n with n ~ N(0, 1) per (sample, channel); the target is ε, or v for v-prediction.
    With several processes each holds ``rows`` of a global batch of ``total``: the draw is the global batch's (the
    one a single process with the whole batch makes), and each process keeps its rows.
    """
    total = latents.shape[0] if total is None else total
    rows = list(range(latents.shape[0])) if rows is None else rows
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    noise = torch.randn((total, *latents.shape[1:]), generator=gen)
    if noise_offset:
        noise = noise + noise_offset * torch.randn((total, latents.shape[1], 1, 1), generator=gen)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (total,), generator=gen)
    noise, t = noise[rows], t[rows]
    noisy = scheduler.add_noise(latents, noise, t)
    target = scheduler.get_velocity(latents, noise, t) if prediction == "v_prediction" else noise
    return noisy, target, t


def min_snr_weights(snr: torch.Tensor, gamma: float, prediction: str = "epsilon") -> torch.Tensor:
    """Min-SNR loss weights: min(SNR, γ)/SNR for ε-prediction, min(SNR, γ)/(SNR + 1) for v-prediction."""
    return torch.clamp(snr, max=gamma) / (snr + 1 if prediction == "v_prediction" else snr)
