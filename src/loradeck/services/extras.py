"""A1111's extras (postprocessing) upscale: scale by or to a size, a second upscaler blended in, a centre crop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from loradeck.engine.upscalers import upscale
from loradeck.errors import InvalidRequest


def target_size(opts: Any, width: int, height: int) -> tuple[float, tuple[int, int] | None]:
    """(scale factor, crop size or None) as A1111's upscale postprocessing computes them."""
    if opts.resize_mode == 1:
        w, h = opts.upscaling_resize_w, opts.upscaling_resize_h
        if w < 1 or h < 1:
            raise InvalidRequest("upscaling_resize_w and upscaling_resize_h must be at least 1.")
        return max(w / width, h / height), ((w, h) if opts.upscaling_crop else None)
    if opts.resize_mode != 0:
        raise InvalidRequest(f"resize_mode must be 0 (scale by) or 1 (scale to), not {opts.resize_mode}.")
    if not 0 < opts.upscaling_resize <= 16:
        raise InvalidRequest(f"upscaling_resize must be above 0 and at most 16, not {opts.upscaling_resize}.")
    return float(opts.upscaling_resize), None


def upscale_one(picture: Image.Image, opts: Any, models_root: Path, max_side: int) -> Image.Image:
    picture = picture.convert("RGB")
    if opts.upscaler_1 in (None, "", "None"):
        return picture  # A1111: no first upscaler, no upscale
    scale, crop = target_size(opts, picture.width, picture.height)
    w, h = int(picture.width * scale), int(picture.height * scale)
    if not (1 <= w <= max_side and 1 <= h <= max_side):
        raise InvalidRequest(f"The upscaled picture would be {w}x{h}; each side must be 1 to {max_side}.")
    out = upscale(picture, w, h, opts.upscaler_1, models_root)
    if opts.upscaler_2 not in (None, "", "None") and opts.extras_upscaler_2_visibility > 0:
        second = upscale(picture, w, h, opts.upscaler_2, models_root)
        out = Image.blend(out, second, min(1.0, float(opts.extras_upscaler_2_visibility)))
    if crop is not None:
        cw, ch = crop
        left, top = (out.width - cw) // 2, (out.height - ch) // 2
        out = out.crop((left, top, left + cw, top + ch))
    return out
