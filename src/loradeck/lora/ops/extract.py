"""A LoRA from the difference of two checkpoints (``loradeck lora extract``), one module at a time.

As kohya's ``extract_lora_from_models.py``: ΔW = W_tuned − W_base in float32 (3×3 convs flattened), its SVD cut at
the rank, α = rank (s = 1), an optional clamp of outliers at a quantile. The thin SVD is enough (kohya asks
``torch.linalg.svd`` for the full U and V, which for an [m, n] matrix costs max(m, n)² memory and time for vectors
that are thrown away).
"""

from __future__ import annotations

import torch

from loradeck.lora.files.write import LowRankModule
from loradeck.lora.ops.merge import ModuleStat
from loradeck.lora.ops.svd import clamp_quantile, dense_svd, fro_retained, split


def max_abs_diff(w_base: torch.Tensor, w_tuned: torch.Tensor) -> float:
    return float((w_tuned.float() - w_base.float()).abs().max()) if w_base.numel() else 0.0


def extract_module(
    name: str, w_base: torch.Tensor, w_tuned: torch.Tensor, rank: int, *, clamp: float | None = None, device="cpu"
) -> tuple[LowRankModule, ModuleStat]:
    """Rank-``rank`` factors of W_tuned − W_base (the best approximation of that rank when ``clamp`` is None)."""
    diff = (w_tuned.to(device, torch.float32) - w_base.to(device, torch.float32)).reshape(w_base.shape[0], -1)
    u, s, vh = dense_svd(diff)
    k = max(1, min(rank, s.numel()))
    up, down = clamp_quantile(*split(u, s, vh, k), clamp)
    return LowRankModule(name, tuple(w_base.shape), up, down), ModuleStat(name, k, *fro_retained(s, k))
