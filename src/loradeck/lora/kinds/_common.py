"""Helpers shared by the kind modules."""

from __future__ import annotations

import torch


def f32(t: torch.Tensor, device) -> torch.Tensor:
    return t.to(device=device, dtype=torch.float32)
