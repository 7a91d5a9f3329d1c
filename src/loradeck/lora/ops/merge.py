"""Merge LoRAs into one LoRA file: exact concatenation, or the optimal rank-N approximation (SVD) of the sum.

Concat: ΔW = Σ_k w_k·ΔW_k exactly — the factors are stacked along the rank axis (up = [w₁U₁ | w₂U₂ …],
down = [D₁; D₂; …]), so ranks add. kohya's ``merge_lora.py`` sums the factors themselves instead (cross terms,
equal ranks required, ratio applied as ratio·|ratio|); its ``--concat`` is what this does, but with every scale
folded in, so the result does not depend on the first file's alpha.

SVD: per module the summed ΔW is cut to rank N (``--conv-rank`` for 3×3 convs) by its SVD — by Eckart–Young the
best rank-N approximation in Frobenius norm, error² = Σ of the discarded σ². kohya's ``svd_merge_lora.py`` does the
same on the dense ΔW and then clamps outliers at the 0.99 quantile, which only adds error; no clamp here unless asked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from loradeck.errors import InvalidRequest
from loradeck.lora.files.read import DeltaSet, ModuleDelta
from loradeck.lora.files.write import LowRankModule
from loradeck.lora.ops.svd import clamp_quantile, dense_svd, factored_svd, fro_retained, split

Progress = Callable[[int, int, str], None]  # (done, total, module name)


@dataclass
class ModuleStat:
    """What a tool did to one module: its new rank and how much of ΔW's Frobenius energy (ΣS²) it kept."""

    name: str
    rank: int
    kept: float  # Σ of the kept σ²
    total: float  # Σ of all σ² = ‖ΔW‖²_F

    @property
    def retained(self) -> float:
        """Retained Frobenius share ‖ΔW_r‖_F / ‖ΔW‖_F."""
        return (self.kept / self.total) ** 0.5 if self.total > 0 else 1.0

    @property
    def error(self) -> float:
        """‖ΔW − ΔW_r‖_F = √(Σ discarded σ²)."""
        return max(0.0, self.total - self.kept) ** 0.5


def _names(inputs: list[tuple[DeltaSet, float]]) -> list[str]:
    seen: dict[str, None] = {}
    for ds, _ in inputs:
        seen.update(dict.fromkeys(ds.modules))
    return list(seen)


def _parts(inputs: list[tuple[DeltaSet, float]], name: str, device) -> list[tuple[ModuleDelta, float]]:
    parts = [(ds.modules[name].to(device), w) for ds, w in inputs if name in ds.modules]
    shapes = {p.shape for p, _ in parts}
    if len(shapes) > 1:
        sources = ", ".join(ds.source for ds, _ in inputs if name in ds.modules)
        raise InvalidRequest(f"module {name} has different shapes in {sources} ({sorted(shapes)}): different bases?")
    return parts


def concat_merge(
    inputs: list[tuple[DeltaSet, float]], *, device="cpu", progress: Progress | None = None
) -> list[LowRankModule]:
    """Exact merge: every module's factors stacked along the rank (scales and weights folded into ``up``)."""
    names, out = _names(inputs), []
    for i, name in enumerate(names):
        parts = _parts(inputs, name, device)
        ups, downs = [], []
        for delta, w in parts:
            up, down = delta.lowrank()
            ups.append(up * w)
            downs.append(down)
        out.append(LowRankModule(name, parts[0][0].shape, torch.cat(ups, 1), torch.cat(downs, 0)))
        if progress:
            progress(i + 1, len(names), name)
    return out


def summed_svd(parts: list[tuple[ModuleDelta, float]]):
    """SVD of Σ w·ΔW: factored when every part has factors, else of the dense sum."""
    if all(d.dense is None for d, _ in parts):
        up = torch.cat([d.matrix_factors()[0] * w for d, w in parts], 1)
        down = torch.cat([d.matrix_factors()[1] for d, _ in parts], 0)
        return factored_svd(up, down)
    total = torch.stack([d.matrix() * w for d, w in parts]).sum(0)
    return dense_svd(total)


def svd_merge(
    inputs: list[tuple[DeltaSet, float]],
    rank: int,
    conv_rank: int | None = None,
    *,
    clamp: float | None = None,
    device="cpu",
    progress: Progress | None = None,
) -> tuple[list[LowRankModule], list[ModuleStat]]:
    """Per module the best rank-``rank`` (3×3 convs: ``conv_rank``, default ``rank``) approximation of Σ w·ΔW."""
    names, out, stats = _names(inputs), [], []
    for i, name in enumerate(names):
        parts = _parts(inputs, name, device)
        shape = parts[0][0].shape
        cap = (conv_rank or rank) if parts[0][0].is_conv3 else rank
        u, s, vh = summed_svd(parts)
        k = max(1, min(cap, s.numel()))
        up, down = clamp_quantile(*split(u, s, vh, k), clamp)
        out.append(LowRankModule(name, shape, up, down))
        stats.append(ModuleStat(name, k, *fro_retained(s, k)))
        if progress:
            progress(i + 1, len(names), name)
    return out, stats
