"""DoRA (``dora_scale`` on a LoRA/LoHa/LoKr module): the merged weight's norm is replaced by the magnitudes.

A1111 convention: M = W + s·ΔW, ΔW_final = M · dora_scale / ‖M‖ − W. The norm axis follows ``dora_scale``'s shape:
``[1, in(,1,1)]`` → per input column (A1111, kohya); ``[out, 1(,1,1)]`` → per output row (LyCORIS 4.x
``wd_on_output``, PEFT magnitude vectors).
"""

from __future__ import annotations

import torch

from loradeck.lora.kinds._common import f32

EPS = torch.finfo(torch.float32).eps


def delta_from_base(scaled_delta: torch.Tensor, dora_scale: torch.Tensor, w0: torch.Tensor) -> torch.Tensor:
    """ΔW_final from the inner kind's s·ΔW, the magnitudes and the base weight."""
    base = w0.float()
    merged = base + scaled_delta
    scale = f32(dora_scale, base.device)
    if scale.dim() == 1 or (scale.shape[0] == base.shape[0] and scale.shape[0] != 1):  # per output row
        norm = merged.reshape(merged.shape[0], -1).norm(dim=1).reshape([-1] + [1] * (base.dim() - 1))
        scale = scale.reshape(norm.shape)
    else:  # per input column: ‖M[:, j, …]‖
        norm = merged.transpose(0, 1).reshape(merged.shape[1], -1).norm(dim=1)
        norm = norm.reshape([1, -1] + [1] * (base.dim() - 2))
        scale = scale.reshape(norm.shape)
    return merged * (scale / (norm + EPS)) - base
