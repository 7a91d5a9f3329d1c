"""A1111's variation seeds: the starting noise of image i is slerp(strength, noise(seed i), noise(subseed i)).

The interpolation is A1111's: per image ([C, H, W]), vectors along dim 1 are normalised, their angle gives the
spherical weights, and nearly parallel vectors are mixed linearly. The main noise is drawn from the image's own
generator exactly as diffusers would draw it, so the generator goes on to give the sampler the same later noise.
"""

from __future__ import annotations

import torch


def slerp(strength: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    low_dir = low / torch.norm(low, dim=1, keepdim=True)
    high_dir = high / torch.norm(high, dim=1, keepdim=True)
    cos = (low_dir * high_dir).sum(1)
    if cos.mean() > 0.9995:
        return low * (1 - strength) + high * strength
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    return (torch.sin((1 - strength) * omega) / sin).unsqueeze(1) * low + (torch.sin(strength * omega) / sin).unsqueeze(
        1
    ) * high


def variation_noise(
    generators: list[torch.Generator],
    subseeds: list[int],
    strength: float,
    shape: tuple[int, int, int],
    dtype: torch.dtype,
) -> torch.Tensor:
    """[n, C, H, W] starting noise; ``generators`` advance as diffusers' own first draw would advance them."""
    images = []
    for generator, subseed in zip(generators, subseeds, strict=True):
        main = torch.randn((1, *shape), generator=generator, dtype=dtype)
        other = torch.randn((1, *shape), generator=torch.Generator("cpu").manual_seed(subseed), dtype=dtype)
        images.append(slerp(strength, main[0].float(), other[0].float()).to(dtype))
    return torch.stack(images)
