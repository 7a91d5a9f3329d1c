"""Match a parsed LoRA against a keymap and the loaded modules; say what matched, what did not, and why."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from loradeck.families import Family
from loradeck.lora.keymap import KeyMap, ModuleRef
from loradeck.lora.slices import slice_for
from loradeck.lora.spec import LoraFile, ModuleSpec
from loradeck.lora.validate import dora_problem


@dataclass
class FileReport:
    """What one LoRA file did to the model."""

    name: str
    path: str
    family: Family
    format: str
    layout: str
    modules_total: int  # modules in the file
    modules_matched: int = 0
    unmatched_modules: list[str] = field(default_factory=list)
    unmatched_keys: list[str] = field(default_factory=list)
    shape_mismatches: list[str] = field(default_factory=list)
    skipped: bool = False
    warning: str = ""


@dataclass
class StackReport:
    """The per-file reports of one ``apply`` plus the warnings to show the user (one per skipped file)."""

    family: Family
    files: list[FileReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    recomputed: int = 0  # parameters whose merged value changed in this apply


def shape_problem(spec: ModuleSpec, module: nn.Module) -> str | None:
    """Why ``spec`` cannot be applied to ``module`` (shape-wise), or None when it fits."""
    w = getattr(module, "weight", None)
    if w is None:
        return f"{spec.name}: target module has no weight"
    t = {k: tuple(v.shape) for k, v in spec.tensors.items()}
    out, per_row = w.shape[0], w.numel() // max(w.shape[0], 1)
    ok = True
    if spec.kind == "lora":
        down, up = t["lora_down.weight"], t["lora_up.weight"]
        cols = math.prod(down[1:]) * (math.prod(t["lora_mid.weight"][2:]) if "lora_mid.weight" in t else 1)
        ok = up[0] == out and cols == per_row
    elif spec.kind == "loha":
        if "hada_t1" in t:
            ok = t["hada_w1_a"][1] == out and t["hada_w1_b"][1] * math.prod(t["hada_t1"][2:]) == per_row
        else:
            ok = t["hada_w1_a"][0] == out and t["hada_w1_b"][1] == per_row
    elif spec.kind == "lokr":
        a, c = t["lokr_w1"] if "lokr_w1" in t else (t["lokr_w1_a"][0], t["lokr_w1_b"][1])
        if "lokr_w2" in t:
            b, rest = t["lokr_w2"][0], math.prod(t["lokr_w2"][1:])
        elif "lokr_t2" in t:
            b, rest = t["lokr_w2_a"][1], t["lokr_w2_b"][1] * math.prod(t["lokr_t2"][2:])
        else:
            b, rest = t["lokr_w2_a"][0], t["lokr_w2_b"][1]
        ok = a * b == out and c * rest == per_row
        if ok and "lokr_w2" in t and len(t["lokr_w2"]) != w.dim():
            ok = len(t["lokr_w2"]) == 2 and w.dim() == 4 and rest % math.prod(w.shape[2:]) == 0  # reshaped to k×k
        elif ok and w.dim() == 4 and "lokr_w2" not in t and "lokr_t2" not in t:
            ok = rest % math.prod(w.shape[2:]) == 0
    elif spec.kind == "full":
        ok = math.prod(t["diff"]) == w.numel()
    elif spec.kind == "norm":
        ok = math.prod(t["w_norm"]) == w.numel()
    elif spec.kind == "ia3":
        on_input = "on_input" in spec.tensors and bool(spec.tensors["on_input"].flatten()[0].item())
        ok = math.prod(t["weight"]) == (w.shape[1] if on_input else out)
    if ok and "bias" in t and spec.kind != "norm":  # A1111's extra weight delta: the weight's size
        ok = math.prod(t["bias"]) == w.numel()
    if ok and "dora_scale" in t:
        ok = dora_problem(t["dora_scale"], tuple(w.shape)) is None
    for bias_key in ("diff_b", "b_norm"):
        if ok and bias_key in t:
            bias = getattr(module, "bias", None)
            ok = bias is not None and math.prod(t[bias_key]) == bias.numel()
    if ok:
        return None
    shapes = ", ".join(f"{k} {list(v)}" for k, v in t.items() if k != "alpha")
    return f"{spec.name} ({shapes}) does not fit weight {list(w.shape)}"


def _in_features(module: nn.Module) -> int:
    w = getattr(module, "weight", None)
    return -1 if w is None or w.dim() < 2 else int(w[0].numel())


def pad_for_inpainting(spec: ModuleSpec, module: nn.Module) -> ModuleSpec:
    """A 4-channel LoRA on a 9-channel inpainting model's first conv: its down (or full diff) gets zero columns for
    the 5 extra input channels, so Δ is A1111's zero-padded update (the mask channels keep their weights)."""
    w = getattr(module, "weight", None)
    if w is None or w.dim() != 4 or w.shape[1] != 9:
        return spec
    key = {"lora": "lora_down.weight", "full": "diff"}.get(spec.kind)
    t = spec.tensors.get(key) if key else None
    if t is None or t.dim() != 4 or t.shape[1] != 4:
        return spec
    padded = torch.nn.functional.pad(t, (0, 0, 0, 0, 0, 5))
    return ModuleSpec(spec.name, spec.kind, {**spec.tensors, str(key): padded}, spec.keys)


def match_lora(
    lora: LoraFile, keymap: KeyMap, module_of: Callable[[ModuleRef], nn.Module | None] | None = None
) -> tuple[FileReport, list[tuple[ModuleSpec, ModuleRef]]]:
    """Resolve every module of ``lora`` through ``keymap``; check shapes when ``module_of`` gives the modules."""
    rep = FileReport(
        name=lora.name,
        path=str(lora.path),
        family=lora.family,
        format=lora.format,
        layout=lora.layout,
        modules_total=len(lora.modules),
        unmatched_keys=list(lora.unparsed_keys),
    )
    if lora.family not in (Family.UNKNOWN, keymap.family):
        rep.skipped = True
        rep.warning = (
            f"LoRA {lora.name} is for {lora.family.label} but the loaded model is {keymap.family.label}; it was skipped"
        )
        return rep, []
    matched: list[tuple[ModuleSpec, ModuleRef]] = []
    n_matched = 0
    for name, spec in lora.modules.items():
        refs = keymap.resolve_all(name)
        modules = [module_of(ref) for ref in refs] if module_of is not None else [None] * len(refs)
        if not refs or (module_of is not None and any(m is None for m in modules)):
            rep.unmatched_modules.append(name)
            rep.unmatched_keys.extend(spec.keys)
            continue
        pieces: list[tuple[ModuleSpec, ModuleRef]] = []
        problem: str | None = None
        for ref, module in zip(refs, modules, strict=True):
            piece: ModuleSpec | str = spec
            if module is not None:
                piece = slice_for(spec, ref, _in_features(module)) if ref.rows is not None else spec
                if isinstance(piece, str):
                    problem = piece
                    break
                piece = pad_for_inpainting(piece, module)
                problem = shape_problem(piece, module)
            elif ref.rows is not None:  # no model to check against: slice by the keymap's numbers alone
                piece = slice_for(spec, ref, -1)
                problem = piece if isinstance(piece, str) else None
            if problem:
                break
            assert not isinstance(piece, str)
            pieces.append((piece, ref))
        if problem:
            rep.shape_mismatches.append(problem)
            continue
        matched.extend(pieces)
        n_matched += 1
    rep.modules_matched = n_matched
    if not matched and not rep.shape_mismatches:
        rep.skipped = True
        rep.warning = f"LoRA {lora.name} matches no module of the loaded {keymap.family.label} model; it was skipped"
    return rep, matched
