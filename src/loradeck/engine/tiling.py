"""A1111's "Tiling": every convolution of the U-Net and the VAE pads circularly, so the picture wraps around at its
edges and tiles seamlessly. Switched on for one job and restored afterwards (the model is shared by later jobs)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def circular_padding(*models: nn.Module | None, enabled: bool = True) -> Iterator[int]:
    """Set ``padding_mode="circular"`` on the padded Conv2d layers of ``models``; yields how many were changed."""
    if not enabled:
        yield 0
        return
    changed: list[tuple[nn.Conv2d, str]] = []
    for model in models:
        if model is None:
            continue
        for module in model.modules():
            if isinstance(module, nn.Conv2d) and module.padding != (0, 0) and isinstance(module.padding, tuple):
                changed.append((module, module.padding_mode))
                module.padding_mode = "circular"  # Conv2d pads with F.pad(mode=...) for any mode but "zeros"
    try:
        yield len(changed)
    finally:
        for module, mode in changed:
            module.padding_mode = mode
