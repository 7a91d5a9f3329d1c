"""9-channel inpainting checkpoints (SD 1.5/2.x/XL inpainting): the U-Net takes the latents plus 5 channels of
conditioning — the redraw mask and the latents of the masked picture — on every call.

The pipelines are the ordinary txt2img/img2img ones; ``NineChannelUNet`` shows them a 4-channel U-Net (so they make
4-channel latents) and concatenates the job's conditioning in ``forward``, in the order the model was trained on:
``[latents, mask, masked-picture latents]``. The conditioning is A1111's: with a mask, the mask rounded to 0/1 at
the latent size and the init picture with the masked part zeroed (mid-grey); without one (txt2img, plain img2img),
a mask of ones and a fully masked (zero) picture.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class NineChannelUNet(nn.Module):
    def __init__(self, unet: nn.Module):
        super().__init__()
        self.inner = unet
        config = dict(unet.config)
        config["in_channels"] = 4
        from diffusers.configuration_utils import FrozenDict

        self.config = FrozenDict(config)
        self.conditioning: torch.Tensor | None = None  # [n, 5, h, w] for the running batch

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("inner"), name)

    def forward(self, sample: torch.Tensor, timestep, *args, **kwargs):
        cond = self.conditioning
        if cond is None:
            raise RuntimeError("NineChannelUNet called without conditioning (Runner.run sets it).")
        cond = cond.to(sample).repeat(sample.shape[0] // cond.shape[0], 1, 1, 1)
        return self.inner(torch.cat([sample, cond], dim=1), timestep, *args, **kwargs)


def conditioning(
    vae: Any, picture: torch.Tensor | None, redraw: torch.Tensor | None, n: int, latent_hw: tuple[int, int]
) -> torch.Tensor:
    """[n, 5, h, w]: mask (1 = redraw) and the latents of the picture with the redrawn part zeroed.

    ``picture``: [1, 3, H, W] in [-1, 1] (None: nothing to keep, as txt2img); ``redraw``: [1, 1, h, w] 0/1 at the
    latent size (None: all of it)."""
    h, w = latent_hw
    scale = float(getattr(vae.config, "scaling_factor", 1.0) or 1.0)
    f = 2 ** (len(vae.config.block_out_channels) - 1)
    dtype, device = vae.dtype, vae.device
    if redraw is None:
        redraw = torch.ones(1, 1, h, w)
    redraw = redraw.to(device, dtype)
    if picture is None:
        picture = torch.zeros(1, 3, h * f, w * f)
    picture = picture.to(device, dtype)
    pixel_mask = torch.nn.functional.interpolate(redraw, size=picture.shape[-2:], mode="nearest")
    with torch.inference_mode():
        latents = vae.encode(picture * (1 - pixel_mask)).latent_dist.mode() * scale
    return torch.cat([redraw, latents], dim=1).repeat(n, 1, 1, 1)
