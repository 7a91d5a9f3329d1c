"""A quick look at the picture being sampled, for progress displays (A1111's "Approx cheap" live preview)."""

from __future__ import annotations

import torch
from PIL import Image

# Linear latent → RGB maps (values in [-1, 1]) fitted for the SD VAEs; A1111 and ComfyUI use the same idea.
_SD_FACTORS = torch.tensor(
    [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]]
)
_SDXL_FACTORS = torch.tensor(
    [[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362], [-0.3165, -0.2492, -0.2188]]
)
_SDXL_BIAS = torch.tensor([0.1084, -0.0175, -0.0011])


def preview_image(latents: torch.Tensor, *, sdxl: bool = False) -> Image.Image:
    """One picture from one image's latents ``[C, h, w]``: pixels as they are (pixel-space models), else a linear map."""
    x = latents.detach().float().cpu()
    if x.shape[0] == 3:  # pixel space (the demo model): the latents are the picture
        rgb = x
    else:
        factors = _SDXL_FACTORS if sdxl else _SD_FACTORS
        rgb = torch.einsum("chw,cr->rhw", x[:4], factors)
        if sdxl:
            rgb = rgb + _SDXL_BIAS[:, None, None]
    rgb = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(rgb)
