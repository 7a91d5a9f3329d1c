"""Change a LoRA's rank (``loradeck lora resize``): per module the SVD of ΔW, cut at a fixed or a dynamic rank.

As kohya's ``resize_lora.py``: the scale s = α/r is kept (α′ = s·r′), ``--rank`` is a cap, and the dynamic methods
pick r′ per module from the singular values (``svd.dynamic_rank``). Unlike kohya there is no 0.99-quantile clamp,
so a file resized to its own rank is the same ΔW.
"""

from __future__ import annotations

from loradeck.lora.files.read import DeltaSet
from loradeck.lora.files.write import LowRankModule
from loradeck.lora.ops.merge import ModuleStat, Progress
from loradeck.lora.ops.svd import dense_svd, dynamic_rank, factored_svd, fro_retained, split


def resize(
    deltas: DeltaSet,
    rank: int | None,
    conv_rank: int | None = None,
    *,
    method: str | None = None,
    param: float | None = None,
    device="cpu",
    progress: Progress | None = None,
) -> tuple[list[LowRankModule], list[ModuleStat]]:
    """New factors and per-module statistics; ``rank`` None with a ``method`` means no cap."""
    out, stats = [], []
    names = list(deltas.modules)
    for i, name in enumerate(names):
        d = deltas.modules[name].to(device)
        u, s, vh = dense_svd(d.dense) if d.dense is not None else factored_svd(*d.matrix_factors())
        cap = (conv_rank or rank) if d.is_conv3 else rank
        k = dynamic_rank(s, method, param) if method and param is not None else (cap or s.numel())
        k = max(1, min(k, cap or k, s.numel()))
        up, down = split(u, s, vh, k)
        out.append(LowRankModule(name, d.shape, up, down, alpha=d.scale * k))
        stats.append(ModuleStat(name, k, *fro_retained(s, k)))
        if progress:
            progress(i + 1, len(names), name)
    return out, stats
