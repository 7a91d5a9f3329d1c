"""Singular value decompositions of ΔW and the rank rules of kohya's ``resize_lora``.

A LoRA's ΔW = U·D ([m, R] @ [R, n]) has rank ≤ R, far below m and n: its thin SVD comes from two QR
factorisations and the SVD of an R×R core (U = Qu·Ru, Dᵀ = Qd·Rd, ΔW = Qu·(Ru·Rdᵀ)·Qdᵀ), O((m+n)·R²) instead of
the O(m·n·min(m, n)) of an SVD of the dense product — with the same singular values and vectors. kohya's scripts
build the dense ΔW and call ``torch.linalg.svd`` on it (with full U and V). All math is float32.
"""

from __future__ import annotations

import torch

METHODS = ("sv_ratio", "sv_cumulative", "sv_fro")


def factored_svd(up: torch.Tensor, down: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD (U [m, k], S [k], Vh [k, n]) of up @ down, k = min(R, m, n), without forming the product."""
    m, r = up.shape
    n = down.shape[1]
    if r >= min(m, n):  # no saving: the factors are as wide as the matrix
        return torch.linalg.svd(up @ down, full_matrices=False)
    qu, ru = torch.linalg.qr(up)  # [m, r], [r, r]
    qd, rd = torch.linalg.qr(down.T)  # [n, r], [r, r]
    uc, s, vch = torch.linalg.svd(ru @ rd.T)
    return qu @ uc, s, vch @ qd.T


def dense_svd(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD of a dense [m, n] matrix (only the min(m, n) vectors that can matter)."""
    return torch.linalg.svd(matrix, full_matrices=False)


def split(u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank-k factors (up [m, k], down [k, n]) with √S on each side, so fp16 files hold both in range."""
    root = s[:k].sqrt()
    return u[:, :k] * root, root[:, None] * vh[:k]


def clamp_quantile(up: torch.Tensor, down: torch.Tensor, q: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """kohya's outlier clamp: both factors limited to ±(the q-quantile of |all their values|); None or 1 = off."""
    if q is None or q >= 1:
        return up, down
    values = torch.cat([up.flatten(), down.flatten()]).abs()
    if values.numel() > 16_000_000:  # torch.quantile's limit: an even sample gives the same quantile closely
        values = values[:: values.numel() // 16_000_000 + 1]
    hi = torch.quantile(values, q)
    return up.clamp(-hi, hi), down.clamp(-hi, hi)


def dynamic_rank(s: torch.Tensor, method: str, param: float) -> int:
    """kohya ``resize_lora`` rank rules on singular values sorted descending (the documented formulas):

    sv_ratio: the number of S_i > S_0 / p; sv_cumulative: the smallest k with ΣS[:k] / ΣS ≥ p;
    sv_fro: the smallest k with ΣS[:k]² / ΣS² ≥ p² (keeps a share p of the Frobenius norm). At least 1.
    """
    if s.numel() == 0 or float(s[0]) <= 0:
        return 1
    if method == "sv_ratio":
        k = int((s > s[0] / param).sum())
    elif method in ("sv_cumulative", "sv_fro"):
        v = s if method == "sv_cumulative" else s.square()
        target = param if method == "sv_cumulative" else param**2
        share = torch.cumsum(v.double(), 0) / v.double().sum()
        k = int((share < target - 1e-12).sum()) + 1  # first index reaching the target, as a count
    else:
        raise ValueError(f"unknown resize method {method!r} (use {', '.join(METHODS)})")
    return max(1, min(k, s.numel()))


def fro_retained(s: torch.Tensor, k: int) -> tuple[float, float]:
    """(kept ΣS², total ΣS²) of a rank-k cut: the retained Frobenius share is √(kept/total)."""
    sq = s.double().square()
    return float(sq[:k].sum()), float(sq.sum())
