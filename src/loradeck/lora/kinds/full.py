"""Full / diff (``diff``, ``diff_b``): ΔW stored as is (LyCORIS ``full``, ``extract_locon`` fallback)."""

from __future__ import annotations

import torch

from loradeck.lora.kinds._common import f32


def delta(t: dict[str, torch.Tensor], shape, device) -> torch.Tensor:
    return f32(t["diff"], device).reshape(shape)


def factors(t: dict[str, torch.Tensor], shape, device) -> None:
    return None


def rank(t: dict[str, torch.Tensor]) -> None:
    return None
