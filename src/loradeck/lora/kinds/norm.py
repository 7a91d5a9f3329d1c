"""Norm layers (``w_norm``, ``b_norm``): Δ of a LayerNorm/GroupNorm weight, a vector."""

from __future__ import annotations

import torch

from loradeck.lora.kinds._common import f32


def delta(t: dict[str, torch.Tensor], shape, device) -> torch.Tensor:
    return f32(t["w_norm"], device).reshape(shape)


def factors(t: dict[str, torch.Tensor], shape, device) -> None:
    return None


def rank(t: dict[str, torch.Tensor]) -> None:
    return None
