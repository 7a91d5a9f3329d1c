"""Row slices of a LoRA module: the part of ΔW that lands on one piece of a fused weight our model holds split.

A Flux LoRA for BFL's fused ``qkv`` [3D, D] changes diffusers' ``to_q``/``to_k``/``to_v`` [D, D] each by its row
block of ΔW (``lora/flux_keys.py``). Row blocks of ΔW are row blocks of the factor that carries the output rows,
so each kind is sliced in its own factors and the patcher merges the slice like any module — the formula stays
exact and the same slice object comes back for the same piece (the patcher recognises unchanged stacks by
identity, and recomputes Δ bit-identically when it undoes a merge):

* LoRA: ``up`` rows (down, α and the rank unchanged, so s = α/r is the file's);
* LoHa: ``hada_w1_a`` and ``hada_w2_a`` rows (ΔW = (W1a·W1b) ⊙ (W2a·W2b));
* LoKr: ΔW = W1 ⊗ W2 with W2 of b rows: when every segment starts and ends on a multiple of b, rows of W1
  (or of its low-rank ``lokr_w1_a``); otherwise the slice is materialised as a ``full`` delta;
* full ``diff``/``diff_b``, IA3 on output rows, A1111's ``bias`` weight delta: rows; IA3 ``on_input``: unchanged;
* DoRA with per-row magnitudes (``[out, 1]``, PEFT/LyCORIS ``wd_on_output``): rows. DoRA with per-column
  magnitudes normalises columns over the whole fused weight, which no piece sees alone: refused, with a reason.
"""

from __future__ import annotations

import torch

from loradeck.lora.keymap import ModuleRef
from loradeck.lora.math import base_delta
from loradeck.lora.spec import ModuleSpec

Segments = tuple[tuple[int, int], ...]


def _rows(t: torch.Tensor, segments: Segments) -> torch.Tensor:
    return torch.cat([t[a:b] for a, b in segments], 0).contiguous()


def out_rows(spec: ModuleSpec) -> int | None:
    """Rows of the module's ΔW as its tensors say, or None when no tensor says (IA3 on input)."""
    t = spec.tensors
    if spec.kind == "lora":
        return int(t["lora_up.weight"].shape[0])
    if spec.kind == "loha":
        return int(t["hada_w1_a"].shape[0]) if "hada_t1" not in t else int(t["hada_w1_a"].shape[1])
    if spec.kind == "lokr":
        a = t["lokr_w1"].shape[0] if "lokr_w1" in t else t["lokr_w1_a"].shape[0]
        b = t["lokr_w2"].shape[0] if "lokr_w2" in t else t["lokr_w2_a"].shape[0]
        return int(a * b)
    if spec.kind == "full":
        return int(t["diff"].shape[0])
    if spec.kind == "ia3":
        on_input = "on_input" in t and bool(t["on_input"].flatten()[0].item())
        return None if on_input else int(t["weight"].numel())
    return None


def slice_for(spec: ModuleSpec, ref: ModuleRef, in_features: int) -> ModuleSpec | str:
    """The part of ``spec`` for ``ref`` (a piece of a fused weight), or why it cannot be cut (a sentence)."""
    if ref.rows is None:
        return spec
    key = (ref.rows, ref.total, in_features)
    cached = spec.pieces.get(key)
    if cached is None:
        cached = _cut(spec, ref.rows, ref.total, in_features)
        spec.pieces[key] = cached
    return cached


def _cut(spec: ModuleSpec, segments: Segments, total: int | None, cols: int) -> ModuleSpec | str:
    t = spec.tensors
    rows = out_rows(spec)
    if spec.kind not in ("lora", "loha", "lokr", "full", "ia3"):
        return f"{spec.name}: a {spec.kind} module cannot address a fused weight"
    if rows is not None and total is not None and rows != total:
        return f"{spec.name} changes {rows} rows but the fused weight it names has {total}"
    if "dora_scale" in t and not _per_row(t["dora_scale"], total):
        return f"{spec.name}: DoRA with per-column magnitudes on a fused weight cannot be split into its pieces"
    new = dict(t)
    kind = spec.kind
    if spec.kind == "lora" and "lora_mid.weight" not in t:
        new["lora_up.weight"] = _rows(t["lora_up.weight"], segments)
    elif spec.kind == "loha" and "hada_t1" not in t:
        new["hada_w1_a"], new["hada_w2_a"] = _rows(t["hada_w1_a"], segments), _rows(t["hada_w2_a"], segments)
    elif spec.kind == "lokr" and _lokr_aligned(t, segments):
        b = int(t["lokr_w2"].shape[0] if "lokr_w2" in t else t["lokr_w2_a"].shape[0])
        w1_rows = tuple((a // b, e // b) for a, e in segments)
        if "lokr_w1" in t:
            new["lokr_w1"] = _rows(t["lokr_w1"], w1_rows)
        else:
            new["lokr_w1_a"] = _rows(t["lokr_w1_a"], w1_rows)
    elif spec.kind == "full":
        new["diff"] = _rows(t["diff"], segments)
        if "diff_b" in t:
            new["diff_b"] = _rows(t["diff_b"].flatten(), segments)
    elif spec.kind == "ia3":
        if rows is not None:
            new["weight"] = _rows(t["weight"].flatten(), segments)
    else:  # Tucker LoRA/LoHa, LoKr across W2 boundaries: the slice of the materialised s·ΔW
        full = base_delta(spec, torch.Size((rows or 0, cols)))  # scaled by s, with A1111's `bias` delta in it
        new, kind = {"diff": _rows(full, segments)}, "full"
    if "bias" in t and kind == spec.kind:  # A1111's extra weight delta has the (fused) weight's elements
        new["bias"] = _rows(t["bias"].reshape(rows or -1, cols), segments)
    if "dora_scale" in t:
        new["dora_scale"] = _rows(t["dora_scale"].reshape(-1, 1), segments)
    return ModuleSpec(spec.name, kind, new, spec.keys)


def _per_row(scale: torch.Tensor, total: int | None) -> bool:
    return scale.dim() == 1 or (scale.shape[0] == total and scale.shape[0] != 1)


def _lokr_aligned(t: dict[str, torch.Tensor], segments: Segments) -> bool:
    if "lokr_t2" in t:
        return False
    b = int(t["lokr_w2"].shape[0] if "lokr_w2" in t else t["lokr_w2_a"].shape[0])
    return all(a % b == 0 and e % b == 0 for a, e in segments)
