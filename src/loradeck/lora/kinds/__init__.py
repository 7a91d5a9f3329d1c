"""One module per LoRA kind: how its tensors make ΔW (before the scale s) and, where exact, low-rank factors of it.

Each kind module has ``delta(tensors, shape, device) -> ΔW`` (float32, the weight's shape) and
``factors(tensors, shape, device) -> (U [out, r], D [r, in·kh·kw]) | None`` with U @ D = ΔW flattened exactly, for
kinds whose ΔW is low-rank by construction (LoRA/LoCon incl. Tucker, LoHa by the Khatri–Rao product, LoKr with
low-rank parts). ``lora.math`` (merging for generation) and ``lora.files.read`` (the tools) both go through here,
so a kind's formula lives in one place. IA3 and DoRA depend on the base weight: see ``ia3.py`` and ``dora.py``.
"""

from __future__ import annotations

from types import ModuleType

from loradeck.lora.kinds import full, ia3, loha, lokr, lora, norm

BY_KIND: dict[str, ModuleType] = {"lora": lora, "loha": loha, "lokr": lokr, "full": full, "norm": norm, "ia3": ia3}
SCALED = ("lora", "loha", "lokr")  # kinds whose ΔW is multiplied by s = α/r


def kind_module(kind: str) -> ModuleType:
    try:
        return BY_KIND[kind]
    except KeyError:
        raise ValueError(f"no weight delta for kind {kind!r}") from None
