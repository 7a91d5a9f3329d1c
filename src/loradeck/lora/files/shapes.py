"""Weight shapes of every LoRA-targetable module of a family, from the configs shipped in the package.

Some kinds do not carry the target's full shape (a LoHa or LoKr conv stores ``in·kh·kw`` flattened), so the tools
read it here: the models are built on the meta device (no memory, no weights) and asked for their shapes through
the canonical key map — never through ``named_modules()``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from loradeck.empty_init import empty_weights
from loradeck.families import Family
from loradeck.lora.keymap import keymap_for_family


def _config(folder: str, sub: str) -> dict:
    text = (resources.files("loradeck") / "configs" / folder / sub / "config.json").read_text()
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


@lru_cache(maxsize=8)
def module_shapes(family: Family) -> dict[str, tuple[int, ...]]:
    """Canonical kohya name → weight shape for ``family``; empty for an unknown family."""
    if family is Family.UNKNOWN or (family is not Family.DEMO and family.config_dir is None):
        return {}
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    if family is Family.DEMO:
        from loradeck.lora.keymap import demo_config  # the package's demo configs, read as data

        unet_cfg, te_cfgs = demo_config("unet"), {"te1": demo_config("text_encoder")}
    else:
        folder = family.config_dir
        assert folder is not None  # families without shipped configs returned above
        unet_cfg, te_cfgs = _config(folder, "unet"), {"te1": _config(folder, "text_encoder")}
        if family is Family.SDXL:
            te_cfgs["te2"] = _config(folder, "text_encoder_2")
    with empty_weights():
        comps = {"unet": UNet2DConditionModel.from_config(unet_cfg)}
        for comp, raw in te_cfgs.items():
            cfg: Any = raw if isinstance(raw, CLIPTextConfig) else CLIPTextConfig(**raw)
            with_proj = "CLIPTextModelWithProjection" in (getattr(cfg, "architectures", None) or [])
            comps[comp] = (CLIPTextModelWithProjection if with_proj else CLIPTextModel)(cfg)
    out: dict[str, tuple[int, ...]] = {}
    for name, ref in keymap_for_family(family).all_modules().items():
        if ref.component in comps:
            try:
                out[name] = tuple(comps[ref.component].get_submodule(ref.path).weight.shape)
            except AttributeError:  # a path this model variant lacks
                continue
    return out
