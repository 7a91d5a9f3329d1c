"""The parsed form of a LoRA file: one ModuleSpec per module, independent of the layout the file used."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from loradeck.families import Family
from loradeck.formats.embeddings import Embedding

# Kinds we can merge; "glora"/"oft" are recognised only to be refused with a clear message.
MERGEABLE = ("lora", "loha", "lokr", "ia3", "full", "norm")


@dataclass
class ModuleSpec:
    """One module of a LoRA file: normalised parameter name → tensor (``lora_down.weight``, ``hada_w1_a``, …)."""

    name: str  # normalised kohya-style name from the file (before keymap aliasing)
    kind: str  # lora | loha | lokr | ia3 | full | norm | glora | oft
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)  # the file's original keys, for reports
    # row slices of this module for the pieces of a fused weight (lora/slices.py), cached so a piece is one object
    pieces: dict = field(default_factory=dict, repr=False, compare=False)

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
    # textual-inversion embeddings bundled in the file (A1111 1.7+ ``bundle_emb.NAME.…``): active with the LoRA
    embeddings: dict[str, Embedding] = field(default_factory=dict)
    _truncated: dict[int, LoraFile] = field(default_factory=dict, repr=False, compare=False)

    def truncated(self, dyn: int) -> LoraFile:
        """This LoRA cut to its first ``dyn`` ranks (DyLoRA's ``<lora:name:te:unet:dyn>``), as A1111 does it:
        plain LoRA modules keep ``up[:, :dyn]`` and ``down[:dyn]`` and their scale α/r of the full rank; other
        modules are unchanged. Cached, so the same ``dyn`` gives the same object (the patcher's switch check)."""
        if dyn not in self._truncated:
            modules = {}
            for name, spec in self.modules.items():
                t = spec.tensors
                if spec.kind != "lora" or "lora_mid.weight" in t or t["lora_down.weight"].shape[0] <= dyn:
                    modules[name] = spec
                    continue
                cut = dict(t)
                cut["lora_down.weight"] = t["lora_down.weight"][:dyn]
                cut["lora_up.weight"] = t["lora_up.weight"][:, :dyn]
                scale = spec.alpha / spec.rank if spec.alpha is not None and spec.rank else 1.0
                cut.setdefault("scale", torch.tensor(scale))
                modules[name] = ModuleSpec(spec.name, spec.kind, cut, spec.keys)
            self._truncated[dyn] = LoraFile(
                self.path, self.metadata, self.family, self.format, self.layout, modules, self.unparsed_keys,
                self.embeddings,
            )  # fmt: skip
        return self._truncated[dyn]

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
