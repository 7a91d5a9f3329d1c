"""Rewrite a LoRA file in another layout (``loradeck lora convert``).

- ``kohya``: canonical kohya module names (``lora_unet_…``, ``lora_te_…``, SDXL ``lora_te1_/te2_`` and SGM U-Net names)
  with kohya parameter names; the tensors themselves are kept as they are (any kind, alpha, DoRA magnitudes), so the
  conversion is lossless — e.g. a diffusers/PEFT file becomes one A1111 reads.
- ``comfy``: kohya names too (ComfyUI maps them onto its models), but every module as a plain LoRA (``lora_up``,
  ``lora_down``, ``alpha``): LoHa/LoKr/Tucker/full become exact low-rank factors, the safest form for ComfyUI.
- ``peft``: the diffusers layout ``unet.<path>.lora_A.weight`` / ``lora_B.weight`` (``text_encoder.``,
  ``text_encoder_2.``) with the scale folded into ``lora_B`` (diffusers assumes α = r when no alpha is stored).
"""

from __future__ import annotations

import torch

from loradeck.arch import arch_of
from loradeck.errors import InvalidRequest
from loradeck.families import Family
from loradeck.lora.files.write import LowRankModule
from loradeck.lora.keymap import keymap_for_family
from loradeck.lora.spec import LoraFile

TARGETS = ("kohya", "peft", "comfy")
_PEFT_PREFIX = {"unet": "unet.", "transformer": "transformer.", "te1": "text_encoder.", "te2": "text_encoder_2."}


def kohya_renamed(lora: LoraFile, dtype: torch.dtype | None = None) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Every module under its canonical kohya name, tensors unchanged (cast to ``dtype`` when given)."""
    keymap = keymap_for_family(lora.family) if lora.family is not Family.UNKNOWN else None
    out: dict[str, torch.Tensor] = {}
    for spec in lora.modules.values():
        name = keymap.canonical(spec.name) if keymap else spec.name
        for param, t in spec.tensors.items():
            if dtype is not None and t.is_floating_point():
                t = t.to(dtype)
            out[f"{name}.{param}"] = t.contiguous()
    for name, emb in lora.embeddings.items():  # bundled embeddings travel with a lossless rename
        keys = ("clip_l", "clip_g") if len(emb.parts) == 2 else ("string_to_param.*",)
        for key, part in zip(keys, emb.parts, strict=True):
            out[f"bundle_emb.{name}.{key}"] = (part.to(dtype) if dtype is not None else part).contiguous()
    notes = [f"{k}: not a key of any LoRA kind; left out" for k in lora.unparsed_keys]
    return out, notes


def peft_tensors(modules: list[LowRankModule], family: Family, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """diffusers/PEFT keys for ``modules`` (their names must be ``family``'s canonical names)."""
    if family is Family.UNKNOWN:
        raise InvalidRequest("the LoRA's base model is not recognised, so its diffusers module paths are unknown.")
    keymap = keymap_for_family(family)
    arch = arch_of(family)
    out: dict[str, torch.Tensor] = {}
    for m in modules:
        refs = keymap.resolve_all(m.name)
        if not refs:
            raise InvalidRequest(f"module {m.name} has no place in a {family.label} model.")
        for ref in refs:  # a fused Flux weight: one PEFT module per piece, with the up's rows of that piece
            path = ref.path
            comp = arch.component(ref.component) if arch else None  # CLIP or OpenCLIP, not T5 (Flux's te2)
            clip = comp is not None and comp.kind in ("clip", "openclip")
            if clip and not path.startswith("text_model."):
                path = "text_model." + path  # the layout diffusers writes for CLIP text encoders
            key = _PEFT_PREFIX[ref.component] + path
            down, up = m.down, m.up
            rows = ref.rows_for(m.shape[1], m.shape[0]) if len(m.shape) == 2 else ref.rows
            if rows is not None:  # split at the file's own widths: no model is loaded to ask
                up = torch.cat([up[a:b] for a, b in rows], 0)
            if len(m.shape) == 4:
                down, up = down.reshape(m.rank, *m.shape[1:]), up.reshape(m.shape[0], m.rank, 1, 1)
            out[f"{key}.lora_A.weight"] = down.to("cpu", dtype).contiguous()
            out[f"{key}.lora_B.weight"] = up.to("cpu", dtype).contiguous()
    return out
