"""LoKr (``lokr_*``): ΔW = W1 ⊗ W2, each part full or a low-rank product (W2 optionally Tucker)."""

from __future__ import annotations

import torch

from loradeck.lora.kinds._common import f32


def _w1(t, device) -> torch.Tensor:
    return f32(t["lokr_w1"], device) if "lokr_w1" in t else f32(t["lokr_w1_a"], device) @ f32(t["lokr_w1_b"], device)


def _w2(t, device) -> torch.Tensor:
    if "lokr_w2" in t:
        return f32(t["lokr_w2"], device)
    if "lokr_t2" in t:  # Tucker: W2[b, d, h, w] = Σ_ij T[i, j, h, w] · w2_a[i, b] · w2_b[j, d]
        return torch.einsum(
            "ijhw,ib,jd->bdhw", f32(t["lokr_t2"], device), f32(t["lokr_w2_a"], device), f32(t["lokr_w2_b"], device)
        )
    return f32(t["lokr_w2_a"], device) @ f32(t["lokr_w2_b"], device)


def delta(t: dict[str, torch.Tensor], shape, device) -> torch.Tensor:
    w1, w2 = _w1(t, device), _w2(t, device)
    if len(shape) == 4:
        w1 = w1.reshape(w1.shape[0], w1.shape[1], 1, 1)
        if w2.dim() == 2:
            w2 = w2.reshape(w2.shape[0], -1, shape[2], shape[3])
    return torch.kron(w1.contiguous(), w2.contiguous()).reshape(shape)


def factors(t: dict[str, torch.Tensor], shape, device) -> None:
    """None: the Kronecker product's rank is rank(W1)·rank(W2), usually near full; callers take an SVD of ΔW."""
    return None


def rank(t: dict[str, torch.Tensor]) -> int | None:
    for k in ("lokr_w1_b", "lokr_w2_b"):
        if k in t:
            return t[k].shape[0]
    return None  # both factors full: s = 1
