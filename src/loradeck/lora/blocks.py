"""Σ m·s·ΔW of one parameter, row block by row block, and the per-block arithmetic the patcher does with it.

Why row blocks: merging a delta and deriving the undo information for it takes several passes over each weight.
Done a few hundred kilobytes at a time on the CPU, those passes run in cache instead of RAM and no weight-sized
temporary is ever allocated (fresh memory costs page faults on first touch). On other devices one block is the
whole tensor: there kernel launches cost more than memory traffic.

Exactness: the patcher undoes a merge by recomputing Δ, so ``DeltaRows.block`` must return bit-identical values
each time it is asked for the same rows of the same contributions. It does: the row partition depends only on the
weight's shape and device, each block is the same GEMM on the same shapes, additions happen in the same order.
"""

from __future__ import annotations

import numpy as np
import torch

from loradeck.lora.math import bias_delta, lowrank_factors, needs_base, weight_delta
from loradeck.lora.spec import ModuleSpec

BLOCK_ELEMENTS = 1 << 18  # 1 MiB of float32 per block: Δ, W′ and the corrections of a block fit in L2 together

BITS = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float64: torch.int64}

Contribution = tuple[ModuleSpec, float]  # (module spec, m) — m already chosen by component (te or unet)


def as_rows(t: torch.Tensor) -> torch.Tensor:
    """The 2-D [rows, cols] view the patcher works on: out-features × the rest; 1-D tensors are one row."""
    return t.view(1, -1) if t.dim() < 2 else t.view(t.shape[0], -1)


def rows_per_block(rows: int, cols: int, device: torch.device) -> int:
    if device.type != "cpu":
        return rows
    return max(1, min(rows, BLOCK_ELEMENTS // max(cols, 1)))


def row_blocks(t: torch.Tensor):
    """(r0, r1) pairs covering the rows of ``as_rows(t)``."""
    rows, cols = as_rows(t).shape
    step = rows_per_block(rows, cols, t.device)
    for r0 in range(0, rows, step):
        yield r0, min(rows, r0 + step)


class DeltaRows:
    """Σ m·s·ΔW (or Σ m·Δb) of one parameter in float32; plain LoRA factors of a stack share one GEMM.

    ``original`` (the unmerged weight) is needed only by formats whose delta depends on it (IA3, DoRA).
    """

    def __init__(
        self,
        contribs: tuple[Contribution, ...],
        param_name: str,
        weight: torch.Tensor,
        original: torch.Tensor | None = None,
    ):
        rows, cols = as_rows(weight).shape
        device = weight.device
        ups, downs = [], []
        rest: torch.Tensor | None = None

        def add_rest(delta: torch.Tensor, m: float) -> None:
            nonlocal rest
            if rest is None:
                rest = torch.zeros(rows, cols, dtype=torch.float32, device=device)
            rest.add_(delta.reshape(rows, cols), alpha=m)

        for spec, m in contribs:
            if param_name == "bias":
                db = bias_delta(spec, device)
                if db is not None:
                    add_rest(db, m)
                continue
            f = lowrank_factors(spec, device)
            if f is not None and f[1].shape[1] == cols:
                ups.append(f[0] * m)
                downs.append(f[1])
            else:
                base = original if needs_base(spec) else weight
                if base is None:
                    raise ValueError(f"{spec.name}: this format needs the original weight")
                add_rest(weight_delta(spec, base), m)
        self.up = torch.cat(ups, 1) if ups else None
        self.down = torch.cat(downs, 0) if downs else None
        self.rest = rest
        if self.up is None and rest is None:
            self.rest = torch.zeros(rows, cols, dtype=torch.float32, device=device)

    def block(self, r0: int, r1: int, out: torch.Tensor) -> torch.Tensor:
        """Rows r0:r1 of Δ, written into ``out`` ([r1 − r0, cols] float32)."""
        if self.up is not None:
            assert self.down is not None
            torch.mm(self.up[r0:r1], self.down, out=out)
            if self.rest is not None:
                out.add_(self.rest[r0:r1])
        else:
            assert self.rest is not None
            out.copy_(self.rest[r0:r1])
        return out

    def merge_rows(self, r0: int, r1: int, base: torch.Tensor, out: torch.Tensor, scratch: torch.Tensor) -> None:
        """out = T(base + Δ[r0:r1]) where ``base`` is a copy (not ``out``); plain float32 LoRAs in one GEMM call."""
        if self.rest is None and base.dtype == torch.float32:
            assert self.up is not None and self.down is not None
            torch.addmm(base, self.up[r0:r1], self.down, out=out)  # C = base + U·D: no separate pass for the add
        else:
            merge_into(out, base, self.block(r0, r1, scratch))


def merge_into(out: torch.Tensor, base: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """out = T(base + Δ), computed in float32 and cast once."""
    if base.dtype == torch.float32:
        return torch.add(base, delta, out=out)
    return out.copy_(base.float().add_(delta))


def round_back(merged: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """T(W′ − Δ): the original up to a few ulps. In float32 it is written over ``delta``."""
    if merged.dtype == torch.float32:
        return torch.sub(merged, delta, out=delta)
    return (merged.float() - delta).to(merged.dtype)


def corrections(base: torch.Tensor, merged: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """bits(W) − bits(T(W′ − Δ)) as integers (wrapping); ``delta`` is used as scratch."""
    bits_t = BITS[base.dtype]
    r = round_back(merged, delta).view(bits_t)
    return torch.sub(base.view(bits_t), r, out=r)


def undo_in_place(weight_rows: torch.Tensor, delta: torch.Tensor, residual_rows: torch.Tensor) -> None:
    """W′ → W: bits(T(W′ − Δ)) + corrections, written over ``weight_rows`` (wide corrections come after)."""
    if weight_rows.dtype == torch.float32:
        torch.sub(weight_rows, delta, out=weight_rows)
    else:
        weight_rows.copy_(weight_rows.float().sub_(delta))
    weight_rows.view(BITS[weight_rows.dtype]).add_(residual_rows)


def wide_positions(c: torch.Tensor) -> torch.Tensor:
    """Flat positions of corrections outside int8's range (a few per block, where W is tiny next to Δ)."""
    if c.device.type == "cpu":  # numpy finds them ~5× faster than torch.nonzero on the CPU
        a = c.reshape(-1).numpy()
        shifted = (a + 128).view(np.uint32 if a.dtype == np.int32 else np.uint16 if a.dtype == np.int16 else np.uint64)
        return torch.from_numpy(np.flatnonzero(np.greater(shifted, 255)))
    flat = c.reshape(-1)
    return ((flat < -128) | (flat > 127)).nonzero().squeeze(1)
