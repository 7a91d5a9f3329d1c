"""The demo model draws at (about) its native size and the picture is upscaled to the size asked for.

The demo is a pixel-space model trained on 32×32 pictures: its U-Net runs on every pixel, so a client's default
512×512 × 20 steps took minutes on a CPU and drew nothing better than 32×32 does. When a side asked for is larger
than ``LIMIT``, the demo draws at the same aspect with its longer side at the native size, and the result is resized
with Lanczos to the size asked for. The response says so in a warning and the infotext records ``Demo drawn at``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

LIMIT = 64  # sides up to this are drawn as asked (tests and the CLI use 32 and 64)


def demo_draw_size(width: int, height: int, native: int) -> tuple[int, int]:
    """The size the demo draws a ``width``×``height`` request at (the same size when it is small enough)."""
    if max(width, height) <= LIMIT:
        return width, height
    factor = max(width, height) / native
    return _side(width / factor), _side(height / factor)


def _side(value: float) -> int:
    return max(8, round(value / 8) * 8)


@dataclass(frozen=True)
class DemoDraw:
    """A demo job drawn smaller than asked: ``asked`` (first pass), ``drawn`` (first pass), ``final`` (the output)."""

    asked: tuple[int, int]
    drawn: tuple[int, int]
    final: tuple[int, int]


def shrink_for_demo(
    width: int, height: int, hires: Any, native: int, warnings: list[str]
) -> tuple[Any, DemoDraw | None]:
    """(the hires plan at the drawn scale, what was shrunk) for a demo job of ``width``×``height``; the first pass is
    drawn at ``DemoDraw.drawn``. None when nothing is shrunk."""
    final = (hires.width, hires.height) if hires is not None else (width, height)
    drawn = demo_draw_size(width, height, native)
    if hires is not None:  # the second pass: longer side at most LIMIT (twice the native size)
        hw, hh = demo_draw_size(hires.width, hires.height, LIMIT)
        hires = replace(hires, width=hw, height=hh)
    if drawn == (width, height) and (hires is None or (hires.width, hires.height) == final):
        return hires, None
    second = f", hires pass at {hires.width}x{hires.height}" if hires is not None else ""
    warnings.append(
        f"The demo model drew this {final[0]}x{final[1]} picture at {drawn[0]}x{drawn[1]}{second} (its native size "
        f"is {native}x{native}) and upscaled it with Lanczos; real checkpoints draw at the size asked for."
    )
    return hires, DemoDraw((width, height), drawn, final)
