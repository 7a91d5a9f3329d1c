"""Keep a pixel-space model's implied clean picture inside [-1, 1] at every step, whatever the sampler.

DDPM-style samplers have `clip_sample` for this; k-diffusion-style ones (Euler, Heun, DPM2, LMS, …) have nothing, and
in pixel space their steps amplify the noise predictor's small errors by σ (up to ~150) into saturated colours. The
clamp works on the model output instead: x̂₀ = (x_t − √(1−ᾱ)·ε̂)/√ᾱ is clamped and ε̂ recomputed from it, so every
sampler sees a prediction whose x̂₀ is a possible picture. Used only when a model's scheduler config sets
`clip_sample` (the demo model); latent-space models (SD 1.x/2.x/XL) never go through it.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn


class X0ClampedUNet(nn.Module):
    """Wraps a diffusers U-Net (epsilon prediction); everything but ``forward`` is the inner model's."""

    def __init__(self, unet: nn.Module, alphas_cumprod: torch.Tensor, clip: float = 1.0):
        super().__init__()
        self.inner = unet
        self.clip = clip
        # log σ(t) on the training grid, to find ᾱ for the fractional timesteps Karras & co. produce
        self.register_buffer("log_sigmas", (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).log(), persistent=False)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("inner"), name)

    def _alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        t = t.float().clamp(0, len(self.log_sigmas) - 1)
        lo = t.floor().long()
        hi = (lo + 1).clamp(max=len(self.log_sigmas) - 1)
        w = t - lo
        log_sigma = (1 - w) * self.log_sigmas[lo] + w * self.log_sigmas[hi]
        return 1.0 / (1.0 + torch.exp(2 * log_sigma))

    def forward(self, sample: torch.Tensor, timestep, *args, return_dict: bool = True, **kwargs):
        eps = self.inner(sample, timestep, *args, return_dict=False, **kwargs)[0]
        t = torch.as_tensor(timestep, device=sample.device)
        ab = self._alpha_bar(t.reshape(-1)).to(sample.dtype)
        ab = ab.reshape(-1, *([1] * (sample.dim() - 1)))
        x0 = ((sample - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-self.clip, self.clip)
        eps = (sample - ab.sqrt() * x0) / (1 - ab).sqrt().clamp(min=math.sqrt(1e-8))
        return SimpleNamespace(sample=eps) if return_dict else (eps,)
