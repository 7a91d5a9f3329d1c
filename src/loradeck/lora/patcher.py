"""Merge a stack of LoRAs into the loaded models' weights, switch stacks incrementally, restore bit-exactly.

Scheme (why no second copy of the weights is needed)
-----------------------------------------------------
For a touched weight W (dtype T) with stack delta Δ (float32, Σ m·s·ΔW) we write W′ = T(W + Δ) and keep only the
*rounding residual* needed to undo it: R = T(W′ − Δ) is W up to a few ulps, and c = bits(W) − bits(R) (integer
difference of the raw IEEE bit patterns, wrapping) is stored as int8 (1 byte per element); the few elements whose
correction is wider (originals tiny next to Δ, ~0.1–1 %) are kept as (index, full-width correction) pairs, and a
module falls back to a full copy only when more than 1/16 of its elements are wide. Restoring recomputes Δ from the
LoRA factors (kept in memory anyway) and sets bits(W) = bits(T(W′ − Δ)) + c, exactly. In fp32 this costs about ¼ of
the touched weights' size (½ in fp16/bf16). Formats whose delta depends on W itself (IA3, DoRA) cannot be recomputed from W′, so those modules keep
a full copy of their original (rare formats, few modules). Measured costs: BENCHMARKS.md ("LoRA patcher").

Exactness relies on Δ being recomputed bit-identically: the same function on the same tensors with the same
contributions in the same order (deterministic on CPU and, for these GEMM shapes, on CUDA).

A generation must never see a half-applied stack: ``apply`` is all-or-nothing (validation of every file before the
first weight is touched; on an unexpected error the touched modules are switched back), and it holds ``self.lock``,
which the caller also holds while sampling.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
from torch import nn

from loradeck.errors import FormatError
from loradeck.lora.keymap import KeyMap, ModuleRef
from loradeck.lora.math import bias_delta, lowrank_factors, needs_base, weight_delta
from loradeck.lora.report import StackReport, match_lora
from loradeck.lora.spec import LoraFile, ModuleSpec

_BITS = {
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float64: torch.int64,
}

Contribution = tuple[ModuleSpec, float]  # (module spec, m) — m already chosen by component (te or unet)


@dataclass(frozen=True)
class StackEntry:
    """One LoRA of a stack with its text-encoder and U-Net multipliers (A1111 `<lora:name:te:unet>`)."""

    lora: LoraFile
    te: float = 1.0
    unet: float = 1.0


@dataclass
class _Slot:
    """Undo information for one touched parameter."""

    contributions: tuple[Contribution, ...]
    residual: torch.Tensor | None = None  # int8/int16 bit corrections
    original: torch.Tensor | None = None  # full copy (IA3/DoRA, or too many wide corrections)
    wide_index: torch.Tensor | None = None  # flat positions whose correction does not fit int8 …
    wide_value: torch.Tensor | None = None  # … and their full-width corrections

    def nbytes(self) -> int:
        parts = (self.residual, self.original, self.wide_index, self.wide_value)
        return sum(t.numel() * t.element_size() for t in parts if t is not None)


def _same(a: tuple[Contribution, ...], b: tuple[Contribution, ...]) -> bool:
    return len(a) == len(b) and all(x[0] is y[0] and x[1] == y[1] for x, y in zip(a, b, strict=False))


def stack_delta(contribs: tuple[Contribution, ...], param_name: str, base: torch.Tensor) -> torch.Tensor:
    """Σ m·s·ΔW (or Σ m·Δb) in float32 on ``base``'s device. Plain LoRAs share one GEMM (factors concatenated)."""
    shape, device = base.shape, base.device
    if param_name == "bias":
        total = torch.zeros(shape, dtype=torch.float32, device=device)
        for spec, m in contribs:
            db = bias_delta(spec, device)
            if db is not None:
                total.add_(db.reshape(shape), alpha=m)
        return total
    ups, downs, rest = [], [], []
    for spec, m in contribs:
        f = lowrank_factors(spec, device)
        if f is not None and f[1].shape[1] * shape[0] == base.numel():
            ups.append(f[0] * m)
            downs.append(f[1])
        else:
            rest.append((spec, m))
    if ups:
        total = (torch.cat(ups, 1) @ torch.cat(downs, 0)).reshape(shape)
    else:
        total = torch.zeros(shape, dtype=torch.float32, device=device)
    for spec, m in rest:
        total.add_(weight_delta(spec, base), alpha=m)
    return total


class LoraPatcher:
    """Applies stacks of LoRAs to ``components`` ({"unet": …, "te1": …, "te2": …}) through ``keymap``."""

    def __init__(self, components: dict[str, nn.Module], keymap: KeyMap):
        self.components = components
        self.keymap = keymap
        self.lock = threading.RLock()
        self._slots: dict[tuple[str, str, str], _Slot] = {}
        self.last_report: StackReport | None = None

    # ------------------------------------------------------------------------------------------------ public
    def apply(self, stack: list[StackEntry]) -> StackReport:
        """Make the weights equal base + stack; only parameters whose contributions change are recomputed."""
        with self.lock:
            report, wanted = self._plan(stack)
            changed = [k for k in set(wanted) | set(self._slots) if not _same(wanted.get(k, ()), self._contribs(k))]
            done: list[tuple[tuple[str, str, str], tuple[Contribution, ...]]] = []
            try:
                for key in sorted(changed):
                    old = self._contribs(key)
                    self._switch(key, wanted.get(key, ()))
                    done.append((key, old))
            except BaseException:
                for key, old in reversed(done):  # put back what the previous stack had
                    self._switch(key, old)
                raise
            report.recomputed = len(changed)
            self.last_report = report
            return report

    def restore(self) -> None:
        """Give every touched parameter its original bits back."""
        self.apply([])

    def undo_bytes(self) -> int:
        """RAM held for restoring (residuals + fallback copies)."""
        return sum(s.nbytes() for s in self._slots.values())

    def fallback_modules(self) -> list[str]:
        return [f"{c}:{p}.{n}" for (c, p, n), s in self._slots.items() if s.original is not None]

    # ------------------------------------------------------------------------------------------------ planning
    def _contribs(self, key) -> tuple[Contribution, ...]:
        slot = self._slots.get(key)
        return slot.contributions if slot else ()

    def _param(self, key: tuple[str, str, str]) -> nn.Parameter:
        comp, path, name = key
        return getattr(self.components[comp].get_submodule(path), name)

    def _plan(
        self, stack: list[StackEntry]
    ) -> tuple[StackReport, dict[tuple[str, str, str], tuple[Contribution, ...]]]:
        """Validate every file against the models (shapes) before anything is touched; collect contributions."""
        report = StackReport(family=self.keymap.family)
        wanted: dict[tuple[str, str, str], list[Contribution]] = {}
        for entry in stack:
            file_report, matched = match_lora(entry.lora, self.keymap, self._module_of)
            report.files.append(file_report)
            if file_report.skipped:
                report.warnings.append(file_report.warning)
                continue
            if file_report.shape_mismatches:
                first = file_report.shape_mismatches[0]
                n = len(file_report.shape_mismatches)
                raise FormatError(
                    entry.lora.path,
                    f"does not fit the loaded model: {first}" + (f" (and {n - 1} more)" if n > 1 else ""),
                )
            for spec, ref in matched:
                m = entry.unet if ref.component == "unet" else entry.te
                for pname in _params_of(spec):
                    wanted.setdefault((ref.component, ref.path, pname), []).append((spec, float(m)))
        return report, {k: tuple(v) for k, v in wanted.items()}

    def _module_of(self, ref: ModuleRef) -> nn.Module | None:
        comp = self.components.get(ref.component)
        if comp is None:
            return None
        try:
            return comp.get_submodule(ref.path)
        except AttributeError:
            return None

    # ------------------------------------------------------------------------------------------------ math on slots
    def _switch(self, key: tuple[str, str, str], new: tuple[Contribution, ...]) -> None:
        param = self._param(key)
        slot = self._slots.get(key)
        base = self._recover(param, key[2], slot) if slot else param.data
        if not new:
            param.data = base
            self._slots.pop(key, None)
            return
        if all(m == 0 for _, m in new):  # nothing to add: keep the original bits, remember the contributions
            param.data = base
            self._slots[key] = _Slot(new, residual=torch.zeros(0, dtype=torch.int8))
            return
        delta = stack_delta(new, key[2], base)
        merged = (base.float() + delta).to(base.dtype) if base.dtype != torch.float32 else base + delta
        if any(needs_base(spec) for spec, _ in new):
            self._slots[key] = _Slot(new, original=base)
        else:
            self._slots[key] = _Slot(new, **_residual(base, merged, delta))
        param.data = merged

    def _recover(self, param: nn.Parameter, pname: str, slot: _Slot) -> torch.Tensor:
        if slot.original is not None:
            return slot.original
        current = param.data
        if slot.residual is None or slot.residual.numel() == 0:  # all multipliers were 0: nothing was changed
            return current
        delta = stack_delta(slot.contributions, pname, current)
        r = _round_back(current, delta)
        bits = r.view(_BITS[r.dtype])
        bits.add_(slot.residual.view(bits.shape))
        if slot.wide_index is not None:
            flat = bits.view(-1)
            flat[slot.wide_index] += slot.wide_value
        return r


def _params_of(spec: ModuleSpec) -> list[str]:
    names = [] if spec.kind == "norm" and "w_norm" not in spec.tensors else ["weight"]
    if "diff_b" in spec.tensors or "b_norm" in spec.tensors:
        names.append("bias")
    return names


def _round_back(merged: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """T(W′ − Δ): the original up to a few ulps (a fresh tensor)."""
    if merged.dtype == torch.float32:
        return torch.sub(merged, delta)
    return (merged.float() - delta).to(merged.dtype)


def _residual(base: torch.Tensor, merged: torch.Tensor, delta: torch.Tensor) -> dict:
    """{'residual': int8/int16 bit corrections} or {'original': base} when they do not fit."""
    bits_t = _BITS.get(base.dtype)
    if bits_t is None:
        return {"original": base}
    if base.dtype == torch.float32:
        r = torch.sub(merged, delta, out=delta)  # reuse the delta's memory
    else:
        r = _round_back(merged, delta)
    rb = r.view(bits_t)
    diff = torch.sub(base.view(bits_t), rb, out=rb)  # wraps on overflow; exact modulo 2**bits
    lo, hi = diff.aminmax()
    if -128 <= int(lo) and int(hi) <= 127:
        return {"residual": diff.to(torch.int8)}
    # Elements whose original is tiny next to Δ are off by many ulps: keep those few exactly, the rest as int8.
    flat = diff.view(-1)
    wide = ((flat < -128) | (flat > 127)).nonzero().squeeze(1)
    if wide.numel() > flat.numel() // 16:
        return {"original": base}
    values = flat[wide].clone()
    flat[wide] = 0
    return {"residual": diff.to(torch.int8), "wide_index": wide, "wide_value": values}
