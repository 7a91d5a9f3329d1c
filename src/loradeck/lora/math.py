"""ΔW of one module for every supported format (docs/reference/lora-formats.md §2), in float32, already multiplied by the scale s.

W′ = W + m · ΔW_s with ΔW_s = s · ΔW (the stack multiplier m is applied by the patcher). Pure functions of tensors.
IA3 and DoRA depend on the original weight W, so their functions take it; the others do not (``needs_base``).
"""

from __future__ import annotations

import torch

from loradeck.lora.spec import ModuleSpec

EPS = torch.finfo(torch.float32).eps


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
    if spec.kind != "lora" or "lora_mid.weight" in t or "dora_scale" in t:
        return None
    up, down = _f(t["lora_up.weight"], device), _f(t["lora_down.weight"], device)
    return up.reshape(up.shape[0], -1) * lora_scale(spec), down.reshape(down.shape[0], -1)


def _lora_delta(t: dict[str, torch.Tensor], shape: torch.Size, device) -> torch.Tensor:
    up, down = _f(t["lora_up.weight"], device), _f(t["lora_down.weight"], device)
    u2 = up.reshape(up.shape[0], -1)
    if "lora_mid.weight" in t:  # Tucker: ΔW[o,i] = Σ_ab U[o,a] M[a,b] D[b,i]
        mid = _f(t["lora_mid.weight"], device)
        d2 = down.reshape(down.shape[0], -1)
        return torch.einsum("oa,abhw,bi->oihw", u2, mid, d2).reshape(shape)
    return (u2 @ down.reshape(down.shape[0], -1)).reshape(shape)


def _hada_part(a, b, t_core, device) -> torch.Tensor:
    a, b = _f(a, device), _f(b, device)
    if t_core is None:
        return a @ b
    # CP/Tucker: W[o, c, h, w] = Σ_ij T[i, j, h, w] · b[j, c] · a[i, o]
    return torch.einsum("ijhw,jc,io->ochw", _f(t_core, device), b, a)


def _loha_delta(t, shape, device) -> torch.Tensor:
    w1 = _hada_part(t["hada_w1_a"], t["hada_w1_b"], t.get("hada_t1"), device)
    w2 = _hada_part(t["hada_w2_a"], t["hada_w2_b"], t.get("hada_t2"), device)
    return (w1 * w2).reshape(shape)


def _lokr_delta(t, shape, device) -> torch.Tensor:
    w1 = _f(t["lokr_w1"], device) if "lokr_w1" in t else _f(t["lokr_w1_a"], device) @ _f(t["lokr_w1_b"], device)
    if "lokr_w2" in t:
        w2 = _f(t["lokr_w2"], device)
    elif "lokr_t2" in t:  # Tucker: W2[b, d, h, w] = Σ_ij T[i, j, h, w] · w2_a[i, b] · w2_b[j, d]
        w2 = torch.einsum(
            "ijhw,ib,jd->bdhw", _f(t["lokr_t2"], device), _f(t["lokr_w2_a"], device), _f(t["lokr_w2_b"], device)
        )
    else:
        w2 = _f(t["lokr_w2_a"], device) @ _f(t["lokr_w2_b"], device)
    if len(shape) == 4:
        w1 = w1.reshape(w1.shape[0], w1.shape[1], 1, 1)
        if w2.dim() == 2:
            w2 = w2.reshape(w2.shape[0], -1, shape[2], shape[3])
    return torch.kron(w1.contiguous(), w2.contiguous()).reshape(shape)


def base_delta(spec: ModuleSpec, shape: torch.Size, device=None) -> torch.Tensor:
    """s·ΔW for formats whose delta does not depend on W (LoRA, LoHa, LoKr, full, norm weight)."""
    t = spec.tensors
    if spec.kind == "lora":
        d = _lora_delta(t, shape, device)
    elif spec.kind == "loha":
        d = _loha_delta(t, shape, device)
    elif spec.kind == "lokr":
        d = _lokr_delta(t, shape, device)
    elif spec.kind == "full":
        return _f(t["diff"], device).reshape(shape)
    elif spec.kind == "norm":
        return _f(t["w_norm"], device).reshape(shape)
    else:
        raise ValueError(f"no weight delta for kind {spec.kind!r}")
    return d * lora_scale(spec)


def ia3_delta(spec: ModuleSpec, w0: torch.Tensor) -> torch.Tensor:
    """ΔW = W ⊙ w, broadcast over output rows (default) or input columns (``on_input``)."""
    w = _f(spec.tensors["weight"], w0.device).flatten()
    base = w0.float()
    on_input = "on_input" in spec.tensors and bool(spec.tensors["on_input"].flatten()[0].item())
    view = [1, -1] + [1] * (base.dim() - 2) if on_input else [-1] + [1] * (base.dim() - 1)
    return base * w.reshape(view)


def dora_delta(spec: ModuleSpec, w0: torch.Tensor) -> torch.Tensor:
    """A1111 convention: M = W + s·ΔW, ΔW_final = M · dora_scale / ‖M‖ − W.

    The norm axis follows ``dora_scale``'s shape: ``[1, in(,1,1)]`` → per input column (A1111, kohya);
    ``[out, 1(,1,1)]`` → per output row (LyCORIS 4.x ``wd_on_output``, PEFT magnitude vectors).
    """
    base = w0.float()
    merged = base + base_delta(spec, base.shape, base.device)
    scale = _f(spec.tensors["dora_scale"], base.device)
    if scale.dim() == 1 or (scale.shape[0] == base.shape[0] and scale.shape[0] != 1):  # per output row
        norm = merged.reshape(merged.shape[0], -1).norm(dim=1).reshape([-1] + [1] * (base.dim() - 1))
        scale = scale.reshape(norm.shape)
    else:  # per input column: ‖M[:, j, …]‖
        norm = merged.transpose(0, 1).reshape(merged.shape[1], -1).norm(dim=1)
        norm = norm.reshape([1, -1] + [1] * (base.dim() - 2))
        scale = scale.reshape(norm.shape)
    return merged * (scale / (norm + EPS)) - base


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
