"""A1111's inpainting on normal checkpoints: the mask, its blur, "only masked" crops, the four fills, and the
per-step latent blending — as hooks around the img2img pipeline, so every sampler and model family gets them.

How A1111 does it, and how we do the same:

- The mask (white = redraw) is inverted if asked, blurred (Gaussian, ``mask_blur`` px), and the blurred mask gives
  (a) the latent mask: resized to the latent size and rounded (A1111's ``mask_round``), and (b) the overlay: after
  sampling, the init picture is composited back wherever the blurred mask is below white, so pixels outside the
  mask (and its blur band) are exactly the init picture's.
- Every model evaluation's denoised prediction x̂₀ is blended with the clean init latents outside the latent mask
  (A1111's CFG denoiser: ``denoised = init·mask + nmask·denoised``). Our hook does it on the U-Net's output: x̂₀ is
  computed from (x_t, ε̂ or v̂, ᾱ(t)), blended, and the prediction recomputed; linear in the prediction, so it is
  the same whether it happens before or after CFG. Then the final latents are blended once more.
- ``inpainting_fill``: 0 "fill" paints the masked area with the blurred colours around it before encoding;
  1 "original" keeps it; 2 "latent noise" and 3 "latent nothing" replace the masked init latents with unit noise
  or zeros (done on the VAE encoder's moments, so the pipeline's own encoding carries them).
- "Only masked" (``inpaint_full_res``): the mask's bounding box, padded by ``inpaint_full_res_padding`` and widened
  to the output's aspect, is cut out, drawn at the full output size, scaled back and pasted in.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter, ImageOps

FILLS = {0: "fill", 1: "original", 2: "latent noise", 3: "latent nothing"}


@dataclass(frozen=True)
class MaskedInit:
    """The picture and mask one sampling pass works on, and how to put its result back."""

    image: Image.Image  # init picture at the working size (filled when fill = 0)
    mask: Image.Image  # blurred mask at the working size (L)
    box: tuple[int, int, int, int] | None  # "only masked": where the working picture goes in the original


def prepare_mask(mask: Image.Image, size: tuple[int, int], invert: bool, blur: int) -> Image.Image:
    """The mask as A1111 uses it: L, the init picture's size, inverted if asked, Gaussian-blurred by ``blur`` px."""
    if mask.mode in ("RGBA", "LA"):  # a transparent-background mask: painted where opaque (A1111 uses the alpha)
        mask = mask.getchannel("A")
    mask = mask.convert("L")
    if mask.size != size:
        mask = mask.resize(size, Image.Resampling.LANCZOS)
    if invert:
        mask = ImageOps.invert(mask)
    if blur > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    return mask


def crop_region(mask: Image.Image, padding: int, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The mask's bounding box (pixels > 0) padded by ``padding`` and widened to ``width``:``height`` inside the
    picture, as A1111's get_crop_region + expand_crop_region; None when the mask is empty."""
    box = mask.getbbox()
    if box is None:
        return None
    x1, y1, x2, y2 = box
    iw, ih = mask.size
    x1, y1, x2, y2 = max(0, x1 - padding), max(0, y1 - padding), min(iw, x2 + padding), min(ih, y2 + padding)
    ratio = width / height
    w, h = x2 - x1, y2 - y1
    if w / h < ratio:  # too narrow: widen around the centre
        want = min(iw, round(h * ratio))
        x1 = min(max(0, x1 - (want - w) // 2), iw - want)
        x2 = x1 + want
    else:  # too flat: heighten
        want = min(ih, round(w / ratio))
        y1 = min(max(0, y1 - (want - h) // 2), ih - want)
        y2 = y1 + want
    return x1, y1, x2, y2


def fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111's fill 0: the masked area painted with ever finer blurs of the colours outside it."""
    rgba = image.convert("RGBA")
    outside = Image.new("RGBA", image.size, (0, 0, 0, 0))
    outside.paste(rgba, mask=ImageOps.invert(mask.convert("L")))
    result = Image.new("RGBA", image.size, (0, 0, 0, 0))
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        layer = _premultiplied_blur(outside, radius) if radius else outside
        for _ in range(repeats):
            result.alpha_composite(layer)
    out = image.convert("RGB").copy()
    out.paste(result.convert("RGB"), mask=mask.convert("L").point(lambda v: 255 if v > 0 else 0))
    return out


def _premultiplied_blur(rgba: Image.Image, radius: int) -> Image.Image:
    arr = np.asarray(rgba, dtype=np.float32)
    alpha = arr[..., 3:] / 255.0
    pre = Image.fromarray((arr[..., :3] * alpha).clip(0, 255).astype(np.uint8), "RGB")
    a = Image.fromarray((alpha[..., 0] * 255).astype(np.uint8), "L")
    pre_b = np.asarray(pre.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
    a_b = np.asarray(a.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)[..., None]
    rgb = np.where(a_b > 0, pre_b * 255.0 / np.maximum(a_b, 1e-6), 0)
    return Image.fromarray(np.concatenate([rgb, a_b], axis=-1).clip(0, 255).astype(np.uint8), "RGBA")


def working_init(
    init: Image.Image, mask: Image.Image, width: int, height: int, full_res: bool, padding: int, fill_mode: int
) -> MaskedInit:
    """The picture and mask to sample at ``width``×``height`` (cropped for "only masked"), filled for fill 0."""
    box = crop_region(mask, padding, width, height) if full_res else None
    image, work_mask = (init.crop(box), mask.crop(box)) if box else (init, mask)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
        work_mask = work_mask.resize((width, height), Image.Resampling.LANCZOS)
    if fill_mode == 0:
        image = fill(image, work_mask)
    return MaskedInit(image.convert("RGB"), work_mask, box)


def put_back(result: Image.Image, init: Image.Image, mask: Image.Image, box: tuple[int, int, int, int] | None):
    """The sampled picture in the original: pasted into its box ("only masked"), then the init picture composited
    back wherever the blurred mask is not white (A1111's overlay)."""
    init = init.convert("RGB")
    if box is not None:
        canvas = init.copy()
        canvas.paste(result.resize((box[2] - box[0], box[3] - box[1]), Image.Resampling.LANCZOS), box[:2])
        result = canvas
    elif result.size != init.size:
        result = result.resize(init.size, Image.Resampling.LANCZOS)
    return Image.composite(result.convert("RGB"), init, mask)


def latent_mask(mask: Image.Image, latent_hw: tuple[int, int]) -> torch.Tensor:
    """Redraw mask [1, 1, h, w] at the latent size, rounded to 0/1 (A1111's latmask with mask_round)."""
    resized = mask.resize((latent_hw[1], latent_hw[0]), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.round(np.asarray(resized, dtype=np.float32) / 255.0))[None, None]


# ---------------------------------------------------------------------------------------------------- hooks
def _alpha_bar(alphas_cumprod: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """ᾱ at (possibly fractional) timesteps, interpolated in log σ as k-diffusion samplers place them."""
    log_sigmas = (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).log()
    t = t.float().clamp(0, len(log_sigmas) - 1)
    lo = t.floor().long()
    hi = (lo + 1).clamp(max=len(log_sigmas) - 1)
    w = t - lo
    log_sigma = (1 - w) * log_sigmas[lo] + w * log_sigmas[hi]
    return 1.0 / (1.0 + torch.exp(2 * log_sigma))


def blend_prediction(
    sample: torch.Tensor,
    prediction: torch.Tensor,
    timestep: Any,
    init: torch.Tensor,
    redraw: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    kind: str,
) -> torch.Tensor:
    """The model prediction whose x̂₀ equals ``init`` where ``redraw`` is 0 and the model's own where it is 1."""
    t = torch.as_tensor(timestep, device=sample.device).reshape(-1)
    ab = _alpha_bar(alphas_cumprod.to(sample.device), t).to(sample.dtype).reshape(-1, 1, 1, 1)
    a, s = ab.sqrt(), (1 - ab).sqrt().clamp(min=1e-4)
    if kind == "v_prediction":
        x0 = a * sample - s * prediction
    else:
        x0 = (sample - s * prediction) / a
    reps = sample.shape[0] // init.shape[0]
    target = init.repeat(reps, 1, 1, 1).to(sample)
    m = redraw.to(sample)
    x0 = target * (1 - m) + x0 * m
    if kind == "v_prediction":
        return (a * sample - x0) / s
    return (sample - a * x0) / s


@contextmanager
def inpaint_hooks(
    unet: torch.nn.Module,
    vae: Any,
    *,
    init_latents: torch.Tensor,
    redraw: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    prediction: str,
    fill_mode: int,
    noise: torch.Tensor | None,
    scaling_factor: float,
) -> Iterator[None]:
    """Blend every U-Net prediction with the init latents outside the mask; for fills 2/3 replace the masked init
    latents (on the VAE encoder's moments: mean = noise/scale or 0, log-variance -30 = no sampling noise)."""

    def on_unet(_module, args, kwargs, output):
        sample = args[0] if args else kwargs["sample"]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        pred = output[0] if isinstance(output, tuple) else output.sample
        blended = blend_prediction(sample, pred, timestep, init_latents, redraw, alphas_cumprod, prediction)
        if isinstance(output, tuple):
            return (blended, *output[1:])
        output.sample = blended
        return output

    hooks = [unet.register_forward_hook(on_unet, with_kwargs=True)]
    quant = getattr(vae, "quant_conv", None)
    if fill_mode in (2, 3) and quant is not None:

        def on_moments(_module, _args, moments):
            c = moments.shape[1] // 2
            m = F.interpolate(redraw.to(moments), size=moments.shape[-2:], mode="nearest")
            mean = torch.zeros_like(moments[:, :c])
            if fill_mode == 2 and noise is not None:
                mean = noise.to(moments).expand_as(mean) / scaling_factor
            logvar = torch.full_like(moments[:, c:], -30.0)
            new = torch.cat([mean, logvar], dim=1)
            return moments * (1 - m) + new * m

        hooks.append(quant.register_forward_hook(on_moments))
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()
