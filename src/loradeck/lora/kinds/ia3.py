"""IA3 (``weight``, ``on_input``): ΔW = W ⊙ w, broadcast over output rows (default) or input columns."""

from __future__ import annotations

import torch

from loradeck.lora.kinds._common import f32


def delta_from_base(t: dict[str, torch.Tensor], w0: torch.Tensor) -> torch.Tensor:
    w = f32(t["weight"], w0.device).flatten()
    base = w0.float()
    on_input = "on_input" in t and bool(t["on_input"].flatten()[0].item())
    view = [1, -1] + [1] * (base.dim() - 2) if on_input else [-1] + [1] * (base.dim() - 1)
    return base * w.reshape(view)


def delta(t, shape, device):
    raise ValueError("an IA3 delta depends on the base weight (use delta_from_base)")


def factors(t, shape, device) -> None:
    return None


def rank(t) -> None:
    return None
