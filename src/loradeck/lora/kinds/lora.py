"""LoRA / LoCon (kohya ``lora_up``/``lora_down``, Tucker ``lora_mid``): ΔW = U·D, or Σ_ab U[o,a]·M[a,b,h,w]·D[b,i]."""

from __future__ import annotations

import torch

from loradeck.lora.kinds._common import f32


def delta(t: dict[str, torch.Tensor], shape, device) -> torch.Tensor:
    up, down = f32(t["lora_up.weight"], device), f32(t["lora_down.weight"], device)
    u2 = up.reshape(up.shape[0], -1)
    if "lora_mid.weight" in t:  # Tucker: ΔW[o,i] = Σ_ab U[o,a] M[a,b] D[b,i]
        mid = f32(t["lora_mid.weight"], device)
        d2 = down.reshape(down.shape[0], -1)
        return torch.einsum("oa,abhw,bi->oihw", u2, mid, d2).reshape(shape)
    return (u2 @ down.reshape(down.shape[0], -1)).reshape(shape)


def factors(t: dict[str, torch.Tensor], shape, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, D) as stored; Tucker folds the core into D: D′[a, (i,h,w)] = Σ_b M[a,b,h,w]·D[b,i] (rank unchanged)."""
    up, down = f32(t["lora_up.weight"], device), f32(t["lora_down.weight"], device)
    u2 = up.reshape(up.shape[0], -1)
    if "lora_mid.weight" in t:
        mid = f32(t["lora_mid.weight"], device)
        d2 = down.reshape(down.shape[0], -1)
        return u2, torch.einsum("abhw,bi->aihw", mid, d2).reshape(mid.shape[0], -1)
    return u2, down.reshape(down.shape[0], -1)


def rank(t: dict[str, torch.Tensor]) -> int:
    return t["lora_down.weight"].shape[0]
