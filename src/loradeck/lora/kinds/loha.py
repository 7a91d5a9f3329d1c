"""LoHa (``hada_*``, CP/Tucker ``hada_t1/t2``): ΔW = (W1a·W1b) ⊙ (W2a·W2b)."""

from __future__ import annotations

import torch

from loradeck.lora.kinds._common import f32


def _part(a, b, t_core, device) -> torch.Tensor:
    a, b = f32(a, device), f32(b, device)
    if t_core is None:
        return a @ b
    # CP/Tucker: W[o, c, h, w] = Σ_ij T[i, j, h, w] · b[j, c] · a[i, o]
    return torch.einsum("ijhw,jc,io->ochw", f32(t_core, device), b, a)


def delta(t: dict[str, torch.Tensor], shape, device) -> torch.Tensor:
    w1 = _part(t["hada_w1_a"], t["hada_w1_b"], t.get("hada_t1"), device)
    w2 = _part(t["hada_w2_a"], t["hada_w2_b"], t.get("hada_t2"), device)
    return (w1 * w2).reshape(shape)


def factors(t: dict[str, torch.Tensor], shape, device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Khatri–Rao: ΔW[o,i] = Σ_ab A1[o,a]·A2[o,b]·B1[a,i]·B2[b,i], so U[o,(a,b)] = A1[o,a]·A2[o,b] and
    D[(a,b),i] = B1[a,i]·B2[b,i] give it exactly at rank r1·r2. None for the CP/Tucker layout."""
    if "hada_t1" in t or "hada_t2" in t:
        return None
    a1, a2 = f32(t["hada_w1_a"], device), f32(t["hada_w2_a"], device)
    b1, b2 = f32(t["hada_w1_b"], device), f32(t["hada_w2_b"], device)
    b1, b2 = b1.reshape(b1.shape[0], -1), b2.reshape(b2.shape[0], -1)
    up = (a1[:, :, None] * a2[:, None, :]).reshape(a1.shape[0], -1)
    down = (b1[:, None, :] * b2[None, :, :]).reshape(-1, b1.shape[1])
    return up, down


def rank(t: dict[str, torch.Tensor]) -> int:
    return t["hada_w1_b"].shape[0]
