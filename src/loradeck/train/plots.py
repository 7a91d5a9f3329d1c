"""The loss curve as a PNG, drawn with Pillow (matplotlib is not a dependency)."""

from __future__ import annotations

import io
import math

from PIL import Image, ImageDraw, ImageFont


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average with bias correction (TensorBoard's smoothing)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i))
    return out


def loss_curve_png(losses: list[float], title: str = "loss", size: tuple[int, int] = (640, 360)) -> bytes:
    """Raw losses in light grey, their moving average in blue, step and loss axes with a few ticks."""
    w, h = size
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, right, top, bottom = 56, w - 16, 28, h - 32
    d.text((left, 8), title, fill="black", font=font)
    d.rectangle((left, top, right, bottom), outline="black")
    finite = [v for v in losses if math.isfinite(v)]
    if not finite:
        d.text((left + 10, top + 10), "no steps yet", fill="black", font=font)
        return _png(img)
    lo, hi = min(finite), max(finite)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    n = len(losses)

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (right - left) * (i / max(1, n - 1))
        y = bottom - (bottom - top) * ((v - lo) / (hi - lo))
        return x, y

    for k in range(5):  # horizontal grid with loss labels
        v = lo + (hi - lo) * k / 4
        _, y = xy(0, v)
        d.line((left, y, right, y), fill=(225, 225, 225))
        d.text((4, y - 6), f"{v:.4g}", fill="black", font=font)
    for k in range(5):  # step labels
        i = round((n - 1) * k / 4)
        x, _ = xy(i, lo)
        d.text((x - 8, bottom + 6), str(i + 1), fill="black", font=font)
    for series, colour in ((losses, (190, 190, 190)), (smooth(losses), (30, 80, 200))):
        pts = [xy(i, v) for i, v in enumerate(series) if math.isfinite(v)]
        if len(pts) > 1:
            d.line(pts, fill=colour, width=2 if colour[2] == 200 else 1)
        elif pts:
            x, y = pts[0]
            d.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
    d.text((right - 120, bottom + 6), "step", fill="black", font=font)
    return _png(img)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()
