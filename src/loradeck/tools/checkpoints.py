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
    """Load a checkpoint or diffusers folder on the CPU (single files keep their dtype; the math casts to float32).

    Diffusers folders (the demo model included) go through the engine's ``load_base_model``; single files through
    the converter ``merge-into`` uses (``formats.ldm_keys``), which needs no tokenizer — only weights matter here.
    """
    path = Path(resolve_source(source)).expanduser()
    if path.is_dir():
        from loradeck.engine.checkpoints import load_base_model

        base = load_base_model(path, dtype=torch.float32)
        comps: dict[str, torch.nn.Module] = {"unet": base.unet, "te1": base.text_encoder}
        if base.text_encoder_2 is not None:
            comps["te2"] = base.text_encoder_2
        family, name = base.family, base.name
    else:
        family, comps = _single_file(path)
        name = path.stem
    keymap = keymap_from_models(family, comps["unet"], {k: v for k, v in comps.items() if k != "unet"})
    return ModelWeights(family, name, keymap, comps)


def _single_file(path: Path) -> tuple[Family, dict[str, torch.nn.Module]]:
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from loradeck.errors import ModelLoadError
    from loradeck.formats.ldm_configs import infer_configs
    from loradeck.formats.ldm_family import detect_checkpoint_family
    from loradeck.formats.ldm_keys import TEXT_ENCODERS, to_diffusers
    from loradeck.lora.bake import module_from_state, read_checkpoint

    if not path.is_file():
        raise ModelLoadError(f"{path}: no such checkpoint file or folder")
    state, metadata = read_checkpoint(path)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    family, prediction = detect_checkpoint_family(state.keys(), shapes, metadata=metadata)
    configs = infer_configs(shapes, family, prediction)
    parts = to_diffusers(state, family)
    del state
    comps: dict[str, torch.nn.Module] = {
        "unet": module_from_state(
            lambda: UNet2DConditionModel.from_config(configs["unet"]), parts["unet"], path, "unet"
        )
    }
    names = {"text_encoder": "te1", "text_encoder_2": "te2"}
    for comp, _prefix, kind in TEXT_ENCODERS[family]:
        cfg = CLIPTextConfig(**{k: v for k, v in configs[comp].items() if not k.startswith("_")})
        cls = CLIPTextModelWithProjection if kind == "openclip_proj" else CLIPTextModel
        comps[names[comp]] = module_from_state(lambda cfg=cfg, cls=cls: cls(cfg), parts[comp], path, comp)
    return family, comps
