"""The parsed form of a LoRA file: one ModuleSpec per module, independent of the layout the file used."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from loradeck.families import Family

# Kinds we can merge; "glora"/"oft" are recognised only to be refused with a clear message.
MERGEABLE = ("lora", "loha", "lokr", "ia3", "full", "norm")


@dataclass
class ModuleSpec:
    """One module of a LoRA file: normalised parameter name → tensor (``lora_down.weight``, ``hada_w1_a``, …)."""

    name: str  # normalised kohya-style name from the file (before keymap aliasing)
    kind: str  # lora | loha | lokr | ia3 | full | norm | glora | oft
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)  # the file's original keys, for reports

    @property
    def alpha(self) -> float | None:
        a = self.tensors.get("alpha")
        return None if a is None else float(a.float().item())

    @property
    def rank(self) -> int | None:
        t = self.tensors
        if self.kind == "lora":
            return t["lora_down.weight"].shape[0]
        if self.kind == "loha":
            return t["hada_w1_b"].shape[0]
        if self.kind == "lokr":
            for k in ("lokr_w1_b", "lokr_w2_b"):
                if k in t:
                    return t[k].shape[0]
            return None  # both factors full: s = 1
        return None

    @property
    def is_conv(self) -> bool:
        d = self.tensors.get("lora_down.weight")
        return d is not None and d.dim() == 4 and (d.shape[2] > 1 or "lora_mid.weight" in self.tensors)


@dataclass
class LoraFile:
    """A loaded LoRA: its modules, what format/family it is, and the keys we could not interpret."""

    path: Path
    metadata: dict[str, str]
    family: Family
    format: str  # "lora", "locon", "loha", "lokr", "ia3", "full", "norm", "dora" flags joined by "+"
    layout: str  # "kohya" | "diffusers" | "peft" | "lycoris"
    modules: dict[str, ModuleSpec]
    unparsed_keys: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def rank(self) -> int | None:
        ranks = [m.rank for m in self.modules.values() if m.rank is not None]
        return max(set(ranks), key=ranks.count) if ranks else None

    @property
    def alpha(self) -> float | None:
        alphas = [m.alpha for m in self.modules.values() if m.alpha is not None]
        return max(set(alphas), key=alphas.count) if alphas else None
