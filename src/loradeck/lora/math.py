"""ΔW of one module for every supported format (docs/reference/lora-formats.md §2), in float32, already multiplied by the scale s.

The per-kind formulas live in ``lora/kinds/`` (one module per kind); this module adds the scale and dispatches.

W′ = W + m · ΔW_s with ΔW_s = s · ΔW (the stack multiplier m is applied by the patcher). Pure functions of tensors.
IA3 and DoRA depend on the original weight W, so their functions take it; the others do not (``needs_base``).

A ``bias`` tensor in a module is A1111's extra weight delta (``network.py`` ``finalize_updown``): it has the weight's
number of elements, is added to ΔW before the scale, so ΔW_s = s · (ΔW + bias) — a sparse or dense correction that
LyCORIS' extraction writes beside the low-rank factors, not a delta of the layer's own bias (that is ``diff_b``).
"""

from __future__ import annotations

import torch

from loradeck.lora.kinds import SCALED, dora, ia3, kind_module
from loradeck.lora.spec import ModuleSpec


def _f(t: torch.Tensor, device: torch.device | str | None) -> torch.Tensor:
    return t.to(device=device, dtype=torch.float32)


def needs_base(spec: ModuleSpec) -> bool:
    """True when ΔW depends on the original weight (so it cannot be recomputed from the merged one)."""
    return spec.kind == "ia3" or "dora_scale" in spec.tensors


def lora_scale(spec: ModuleSpec) -> float:
    """s per docs/reference/lora-formats.md §2.10: α/r, missing α → 1; a `scale` tensor overrides; IA3/full/norm → 1; LoKr both full → 1."""
    t = spec.tensors
    if "scale" in t:
        return float(t["scale"].float().item())
    r = spec.rank
    if spec.alpha is None or r is None or r == 0:
        return 1.0
    return spec.alpha / r


def lowrank_factors(spec: ModuleSpec, device=None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(U·s [out, r], D [r, in·k·k]) for plain LoRA/LoCon modules (no Tucker mid, no DoRA), else None."""
    t = spec.tensors
    if spec.kind != "lora" or "lora_mid.weight" in t or "dora_scale" in t or "bias" in t:
        return None
    up, down = _f(t["lora_up.weight"], device), _f(t["lora_down.weight"], device)
    return up.reshape(up.shape[0], -1) * lora_scale(spec), down.reshape(down.shape[0], -1)


def base_delta(spec: ModuleSpec, shape: torch.Size, device=None) -> torch.Tensor:
    """s·ΔW for formats whose delta does not depend on W (LoRA, LoHa, LoKr, full, norm weight)."""
    if spec.kind == "ia3":
        raise ValueError("no weight delta for kind 'ia3' without the base weight")
    d = kind_module(spec.kind).delta(spec.tensors, shape, device)
    d = _with_bias(spec, d)
    return d * lora_scale(spec) if spec.kind in SCALED else d


def _with_bias(spec: ModuleSpec, delta: torch.Tensor) -> torch.Tensor:
    """ΔW + A1111's ``bias`` weight delta (reshaped to ΔW's shape), when the module has one."""
    extra = spec.tensors.get("bias")
    if extra is None or spec.kind == "norm":
        return delta
    return delta + _f(extra, delta.device).reshape(delta.shape)


def ia3_delta(spec: ModuleSpec, w0: torch.Tensor) -> torch.Tensor:
    """ΔW = W ⊙ w, broadcast over output rows (default) or input columns (``on_input``), plus ``bias`` if any."""
    return _with_bias(spec, ia3.delta_from_base(spec.tensors, w0))


def dora_delta(spec: ModuleSpec, w0: torch.Tensor) -> torch.Tensor:
    """DoRA: the merged weight's norm replaced by ``dora_scale`` (axis from its shape; see ``kinds/dora.py``)."""
    return dora.delta_from_base(base_delta(spec, w0.shape, w0.device), spec.tensors["dora_scale"], w0)


def weight_delta(spec: ModuleSpec, w0: torch.Tensor) -> torch.Tensor:
    """s·ΔW in float32 on ``w0``'s device, for any supported format (m = 1)."""
    if spec.kind == "ia3":
        return ia3_delta(spec, w0)
    if "dora_scale" in spec.tensors:
        return dora_delta(spec, w0)
    return base_delta(spec, w0.shape, w0.device)


def bias_delta(spec: ModuleSpec, device=None) -> torch.Tensor | None:
    """Δb for formats that carry one (full ``diff_b``, norm ``b_norm``), else None."""
    for key in ("diff_b", "b_norm"):
        if key in spec.tensors:
            return _f(spec.tensors[key], device).flatten()
    return None
