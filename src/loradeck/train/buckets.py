"""Aspect-ratio buckets (kohya ``make_bucket_resolutions``) and fitting a picture into its bucket."""

from __future__ import annotations

import math

from PIL import Image


def make_buckets(resolution: int, min_size: int, max_size: int, step: int) -> list[tuple[int, int]]:
    """(width, height) buckets of about ``resolution²`` pixels, sides multiples of ``step`` in [min_size, max_size]."""
    area = resolution * resolution
    side = int(math.sqrt(area) // step) * step
    buckets = {(side, side)}
    w = min_size
    while w <= max_size:
        h = min(max_size, int(area // w // step) * step)
        if h >= min_size:
            buckets.add((w, h))
            buckets.add((h, w))
        w += step
    return sorted(buckets)


def pick_bucket(width: int, height: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket with the closest aspect ratio (ties: the larger one)."""
    ar = width / height
    return min(buckets, key=lambda b: (abs(b[0] / b[1] - ar), -b[0] * b[1]))


def no_upscale_bucket(width: int, height: int, resolution: int, step: int) -> tuple[int, int]:
    """``bucket_no_upscale``: shrink only (to at most resolution² pixels), sides rounded down to ``step``."""
    scale = min(1.0, math.sqrt(resolution * resolution / (width * height)))
    w, h = width * scale, height * scale
    return max(step, int(w // step) * step), max(step, int(h // step) * step)


def fit(image: Image.Image, bucket: tuple[int, int]) -> Image.Image:
    """Resize so the picture covers the bucket, then centre-crop to it."""
    bw, bh = bucket
    scale = max(bw / image.width, bh / image.height)
    w, h = max(bw, round(image.width * scale)), max(bh, round(image.height * scale))
    if (w, h) != image.size:
        image = image.resize((w, h), Image.Resampling.LANCZOS)
    left, top = (w - bw) // 2, (h - bh) // 2
    return image.crop((left, top, left + bw, top + bh))
