"""Base-model weights by canonical LoRA module name, loaded with the engine's loaders (single files, diffusers
folders, the demo model), for ``extract`` and for IA3/DoRA inputs of ``merge``/``resize``/``convert``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from loradeck.families import Family
from loradeck.lora.keymap import KeyMap, keymap_from_models


@dataclass
class ModelWeights:
    """One loaded base model's LoRA-targetable weights: ``weight(name)`` for a canonical kohya name."""

    family: Family
    name: str
    keymap: KeyMap
    components: dict[str, torch.nn.Module]

    def weight(self, name: str) -> torch.Tensor | None:
        ref = self.keymap.resolve(name)
        if ref is None or ref.component not in self.components:
            return None
        try:
            return self.components[ref.component].get_submodule(ref.path).weight.detach()
        except AttributeError:
            return None


def resolve_source(source: str | Path) -> str | Path:
    """``demo`` (or an empty string) is the embedded demo model's folder."""
    if str(source) in ("", "demo"):
        return Path(__file__).resolve().parents[1] / "demo" / "model"
    return source


def load_weights(source: str | Path) -> ModelWeights:
    """Load a checkpoint or diffusers folder in float32 on the CPU (the VAE is dropped at once)."""
    from loradeck.engine.checkpoints import load_base_model

    base = load_base_model(resolve_source(source), dtype=torch.float32)
    comps: dict[str, torch.nn.Module] = {"unet": base.unet, "te1": base.text_encoder}
    if base.text_encoder_2 is not None:
        comps["te2"] = base.text_encoder_2
    keymap = keymap_from_models(base.family, base.unet, {k: v for k, v in comps.items() if k != "unet"})
    return ModelWeights(base.family, base.name, keymap, comps)
