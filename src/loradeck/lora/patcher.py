"""Merge a stack of LoRAs into the loaded models' weights, switch stacks incrementally, restore bit-exactly.

Undo schemes (how the original weights come back without a second copy of the model)
-------------------------------------------------------------------------------------
Every touched weight W (dtype T) is merged in place, W′ = T(W + Δ) with Δ = Σ m·s·ΔW in float32, and keeps one of:

* **a copy** of W (4 bytes per fp32 element). Undoing is a copy, a switch costs one Δ. On the CPU, where a Δ
  costs ~0.8 ns per element, copies are kept for up to ``copy_share`` (default 90 %) of the touched weights' bytes,
  capped at a quarter of the machine's RAM, so the undo memory always stays below the size of the touched weights
  (0.9 + 0.1/4 in fp32): less than the full backup A1111 keeps. On GPUs none (Δ costs next to nothing there and
  memory is scarce). IA3/DoRA modules always keep a copy: their Δ depends on W. Copies stay when the stack goes
  back to no LoRA (``apply([])``), so the next stack needs no copying; ``restore()`` frees them.
* **int8 corrections** (1 byte per element): c = bits(W) − bits(T(W′ − Δ)), the integer difference of the raw IEEE
  bit patterns. Undoing recomputes Δ from the LoRA factors (kept in memory anyway) and sets
  bits(W) = bits(T(W′ − Δ)) + c, exactly. The few elements whose correction does not fit in int8 (originals tiny
  next to Δ: 0.04 % of them in bench/lora_apply.py) keep (index, full-width correction) pairs.

Measured costs: BENCHMARKS.md ("LoRA patcher"). All the work runs row block by row block (``blocks.py``), in cache.

Exactness relies on Δ being recomputed bit-identically: the same function on the same tensors with the same
contributions in the same order on the same row blocks (deterministic on CPU and, for these GEMM shapes, on CUDA).

A generation must never see a half-applied stack: ``apply`` is all-or-nothing (validation of every file before the
first weight is touched; everything a parameter needs is allocated before its first block is written; on an
unexpected error the touched parameters are switched back), and it holds ``self.lock``, which the generation also
holds while it samples (``loradeck.services.generation.run_plan``), so no other stack can change the weights mid-job.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import torch
from torch import nn

from loradeck.errors import FormatError
from loradeck.lora.block_weights import BlockWeights, block_table, missing_blocks_warning
from loradeck.lora.blocks import (
    BITS,
    BLOCK_ELEMENTS,
    Contribution,
    DeltaRows,
    as_rows,
    corrections,
    merge_into,
    row_blocks,
    undo_in_place,
    wide_positions,
)
from loradeck.lora.keymap import DENOISERS, KeyMap, ModuleRef
from loradeck.lora.math import needs_base
from loradeck.lora.report import StackReport, match_lora
from loradeck.lora.spec import LoraFile

CPU_COPY_SHARE = 0.9


@dataclass(frozen=True)
class StackEntry:
    """One LoRA of a stack with its text-encoder and U-Net multipliers (A1111 `<lora:name:te:unet>`) and, optionally,
    per-block multipliers (`lbw=`, ``block_weights.py``) that scale each module's multiplier by its block's weight."""

    lora: LoraFile
    te: float = 1.0
    unet: float = 1.0
    block_weights: BlockWeights | None = None


@dataclass
class _Slot:
    """Undo information for one touched parameter: a copy of the original, or int8 corrections."""

    contributions: tuple[Contribution, ...]  # () with a copy: the weight is back to its original, copy kept
    original: torch.Tensor | None = None
    residual: torch.Tensor | None = None  # int8, shape of as_rows(weight)
    wide_index: torch.Tensor | None = None  # sorted flat positions whose correction does not fit int8 …
    wide_value: torch.Tensor | None = None  # … and their full-width corrections

    def nbytes(self) -> int:
        parts = (self.residual, self.original, self.wide_index, self.wide_value)
        return sum(t.numel() * t.element_size() for t in parts if t is not None)


def _same(a: tuple[Contribution, ...], b: tuple[Contribution, ...]) -> bool:
    return len(a) == len(b) and all(x[0] is y[0] and x[1] == y[1] for x, y in zip(a, b, strict=False))


class LoraPatcher:
    """Applies stacks of LoRAs to ``components`` ({"unet": …, "te1": …, "te2": …}) through ``keymap``.

    ``copy_share``: the share of the touched weights' bytes kept as exact copies (fast switches), the rest keeps
    int8 corrections; ``copy_cap``: an upper bound in bytes. None picks the defaults described above.
    """

    def __init__(
        self,
        components: dict[str, nn.Module],
        keymap: KeyMap,
        copy_share: float | None = None,
        copy_cap: int | None = None,
    ):
        self.components = components
        self.keymap = keymap
        self.lock = threading.RLock()
        self._slots: dict[tuple[str, str, str], _Slot] = {}
        self._copied = 0  # bytes held in slot.original
        self._copy_budget = 0.0  # bytes of copies allowed during the current apply
        self._touched: dict[tuple[str, str, str], int] = {}  # bytes of every weight touched since restore()
        self._scratch: dict[tuple[torch.dtype, torch.device, int], torch.Tensor] = {}
        on_cpu = all(p.device.type == "cpu" for m in components.values() for p in m.parameters())
        self.copy_share = (CPU_COPY_SHARE if on_cpu else 0.0) if copy_share is None else copy_share
        self.copy_cap = _ram_bytes() // 4 if copy_cap is None else copy_cap
        self.last_report: StackReport | None = None
        self._blocks: dict[str, int | None] | None = None  # canonical module name → block (lbw), built on first use

    # ------------------------------------------------------------------------------------------------ public
    def apply(self, stack: list[StackEntry]) -> StackReport:
        """Make the weights equal base + stack; only parameters whose contributions change are recomputed."""
        with self.lock:
            report, wanted = self._plan(stack)
            changed = [k for k in set(wanted) | set(self._slots) if not _same(wanted.get(k, ()), self._contribs(k))]
            for k in wanted.keys() - self._touched.keys():
                self._touched[k] = _size(self._param(k).data)
            self._copy_budget = min(self.copy_share * sum(self._touched.values()), self.copy_cap)
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
        """Give every touched parameter its original bits back and free all undo memory."""
        with self.lock:
            self.apply([])
            self._slots.clear()
            self._touched.clear()
            self._copied = 0
            self._scratch.clear()

    def undo_bytes(self) -> int:
        """RAM held for restoring (copies, kept copies and corrections)."""
        return sum(s.nbytes() for s in self._slots.values())

    def copied_modules(self) -> list[str]:
        """Parameters whose original is kept as a copy."""
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
            touched: list[int | None] = []
            for spec, ref in matched:
                m = float(entry.unet if ref.component in DENOISERS else entry.te)
                if entry.block_weights is not None:
                    block = self._block_of(spec.name)
                    touched.append(block)
                    m *= entry.block_weights.weight(block)
                if m == 0:  # weight 0 adds nothing: the parameter keeps its original bits
                    continue
                for pname in _params_of(spec):
                    wanted.setdefault((ref.component, ref.path, pname), []).append((spec, m))
            if entry.block_weights is not None:
                note = missing_blocks_warning(entry.lora.name, entry.block_weights, touched)
                if note:
                    report.warnings.append(note)
        return report, {k: tuple(v) for k, v in wanted.items()}

    def _block_of(self, name: str) -> int | None:
        if self._blocks is None:
            self._blocks = block_table(self.keymap)
        return self._blocks.get(self.keymap.canonical(name))

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
        has_copy = slot is not None and slot.original is not None
        if not has_copy and any(needs_base(spec) for spec, _ in new):  # IA3/DoRA: Δ is a function of the original
            slot = self._rewrite(key, param.data, slot, (), keep_copy=True)
            has_copy = True
        nbytes = param.data.numel() * param.data.element_size()
        keep_copy = has_copy or (bool(new) and self._copied + nbytes <= self._copy_budget)
        self._rewrite(key, param.data, slot, new, keep_copy)

    def _rewrite(
        self, key, w: torch.Tensor, slot: _Slot | None, new: tuple[Contribution, ...], keep_copy: bool
    ) -> _Slot | None:
        """Turn W (merged with ``slot``'s contributions) into T(W_original + Δ_new) in place, block by block.

        Everything that can fail (Δ factors, copies, corrections, scratch) is allocated before the first block
        is written, so an error leaves this parameter as it was.
        """
        rows = as_rows(w)
        cols = rows.shape[1]
        old_copy = slot.original if slot else None
        old_delta = DeltaRows(slot.contributions, key[2], w) if slot and slot.residual is not None else None
        new_delta = DeltaRows(new, key[2], w, original=old_copy) if new else None
        fresh_copy = torch.empty_like(w) if keep_copy and old_copy is None else None
        residual = torch.empty(rows.shape, dtype=torch.int8, device=w.device) if new and not keep_copy else None
        n_max = next(iter(row_blocks(w)))[1] * cols
        dbuf = self._buffer(torch.float32, w.device, n_max, 0)
        mbuf = self._buffer(w.dtype, w.device, n_max, 1) if residual is not None else None

        copy_rows = as_rows(old_copy) if old_copy is not None else None
        fresh_rows = as_rows(fresh_copy) if fresh_copy is not None else None
        wides: list[tuple[torch.Tensor, torch.Tensor]] = []
        for r0, r1 in row_blocks(w):
            wb = rows[r0:r1]
            d = dbuf[: (r1 - r0) * cols].view(r1 - r0, cols)
            if copy_rows is not None:
                base = copy_rows[r0:r1]
            else:
                base = wb
                if old_delta is not None:
                    assert slot is not None and slot.residual is not None
                    undo_in_place(wb, old_delta.block(r0, r1, d), slot.residual[r0:r1])
                    _apply_wides(wb, r0 * cols, slot)
            if fresh_rows is not None:
                base = fresh_rows[r0:r1].copy_(base)
            if new_delta is None:
                if base is not wb:
                    wb.copy_(base)
                continue
            if residual is None:  # the original lives in a copy: merge straight into the weight
                new_delta.merge_rows(r0, r1, base, wb, d)
                continue
            d = new_delta.block(r0, r1, d)
            assert mbuf is not None
            merged = merge_into(mbuf[: (r1 - r0) * cols].view(r1 - r0, cols), base, d)
            c = corrections(base, merged, d)
            lo, hi = c.aminmax()
            if int(lo) < -128 or int(hi) > 127:
                wide = wide_positions(c)
                flat = c.view(-1)
                wides.append((wide + r0 * cols, flat[wide].clone()))
                flat[wide] = 0
            residual[r0:r1].copy_(c)
            wb.copy_(merged)

        copy = old_copy if old_copy is not None else fresh_copy
        if not keep_copy:
            copy = None
        self._copied += _size(copy) - _size(old_copy)
        if not new and copy is None:
            self._slots.pop(key, None)
            return None
        new_slot = _Slot(new, original=copy, residual=residual)
        if wides:
            new_slot.wide_index = torch.cat([i for i, _ in wides])
            new_slot.wide_value = torch.cat([v for _, v in wides])
        self._slots[key] = new_slot
        return new_slot

    def _buffer(self, dtype: torch.dtype, device: torch.device, n: int, which: int) -> torch.Tensor:
        """Scratch space for one block (kept between calls; grows to the largest block seen)."""
        key = (dtype, device, which)
        buf = self._scratch.get(key)
        if buf is None or buf.numel() < n:
            buf = torch.empty(max(n, BLOCK_ELEMENTS if device.type == "cpu" else n), dtype=dtype, device=device)
            self._scratch[key] = buf
        return buf


def _ram_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: no cap beyond the share
        return 1 << 62


def _size(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()


def _apply_wides(rows: torch.Tensor, offset: int, slot: _Slot) -> None:
    """Add the full-width corrections that fall into this block (flat positions offset … offset + rows.numel())."""
    if slot.wide_index is None:
        return
    idx = slot.wide_index
    lo, hi = torch.searchsorted(idx, torch.tensor([offset, offset + rows.numel()], device=idx.device)).tolist()
    if hi > lo:
        assert slot.wide_value is not None
        rows.view(-1).view(BITS[rows.dtype])[idx[lo:hi] - offset] += slot.wide_value[lo:hi]


def _params_of(spec) -> list[str]:
    names = [] if spec.kind == "norm" and "w_norm" not in spec.tensors else ["weight"]
    if "diff_b" in spec.tensors or "b_norm" in spec.tensors:
        names.append("bias")
    return names
