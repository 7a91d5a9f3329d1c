"""Which Stable Diffusion a single-file checkpoint holds, from its key names and shapes (pure: no file access).

The signals (the same ones A1111 and ComfyUI read):

- SD 1.x: a CLIP-L text encoder under ``cond_stage_model.transformer.`` and cross-attention context 768;
- SD 2.x: an OpenCLIP-H text encoder under ``cond_stage_model.model.`` and context 1024;
- SDXL base: two embedders (``conditioner.embedders.0`` CLIP-L, ``.1`` OpenCLIP-bigG), ``label_emb`` and context 2048.

SD 2.x comes as 512-pixel epsilon models (2.0/2.1-base) and 768-pixel v-prediction models (2.0/2.1-768), with the
same keys. A1111 tells them apart by running the U-Net once; we do not run anything while loading, so the prediction
comes from, in order: the caller (``--prediction``), a ``v_pred`` key in the state dict (ComfyUI's marker), the
``modelspec.prediction_type`` metadata of a safetensors file, the A1111 ``.yaml`` sidecar beside the file
(``parameterization: "v"``), and else the default: **v-prediction for SD 2.x** (2.1-768 and its fine-tunes are by
far the most common SD 2.x files), epsilon for SD 1.x and SDXL.

Zero terminal SNR (``zero_terminal_snr``): the ``ztsnr`` marker key (NoobAI-XL V-Pred and other v-prediction SDXL
derivatives carry it next to ``v_pred``, as ComfyUI and reForge read them), kohya's ``ss_zero_terminal_snr``
training metadata, or ``zero_terminal_snr``/``rescale_betas_zero_snr: true`` in the ``.yaml`` sidecar; such models
sample with diffusers' ``rescale_betas_zero_snr`` (the last timestep at SNR 0).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from loradeck.errors import ModelLoadError
from loradeck.families import Family
from loradeck.formats.ldm_keys import UNET_PREFIX

SD1_TE = "cond_stage_model.transformer.text_model."
SD2_TE = "cond_stage_model.model."
XL_TE1 = "conditioner.embedders.0.transformer.text_model."
XL_TE2 = "conditioner.embedders.1.model."
XL_REFINER_TE = "conditioner.embedders.0.model."
_CONV_IN = UNET_PREFIX + "input_blocks.0.0.weight"
_PREDICTIONS = ("epsilon", "v")

# Layouts of other model kinds we recognise only to name them in the error.
_OTHER_LAYOUTS = (
    ("model.diffusion_model.joint_blocks.", "an SD3 model"),
    ("double_blocks.", "a Flux model"),
    ("model.diffusion_model.double_blocks.", "a Flux model"),
    ("lora_unet_", "a LoRA, not a base model"),
    ("lora_te", "a LoRA, not a base model"),
    ("down_blocks.", "a diffusers U-Net file, not a single-file checkpoint"),
)


def _context_dim(keys: Iterable[str], shapes: Mapping[str, tuple[int, ...]]) -> int | None:
    for k in keys:
        if k.startswith(UNET_PREFIX) and k.endswith("transformer_blocks.0.attn2.to_k.weight"):
            return shapes[k][1]
    return None


def detect_checkpoint_family(
    keys: Iterable[str],
    shapes: Mapping[str, tuple[int, ...]],
    *,
    metadata: Mapping[str, str] | None = None,
    sidecar_yaml: str | None = None,
) -> tuple[Family, str]:
    """(family, prediction) of an LDM state dict; prediction is "epsilon" or "v" (see the module docstring).

    Raises ModelLoadError naming what was found for refiners, inpainting/pix2pix models and unknown layouts.
    """
    keys = list(keys)
    has = {p: any(k.startswith(p) for k in keys) for p in (SD1_TE, SD2_TE, XL_TE1, XL_TE2, XL_REFINER_TE)}
    if _CONV_IN not in shapes:
        for prefix, what in _OTHER_LAYOUTS:
            if any(k.startswith(prefix) for k in keys):
                raise ModelLoadError(f"this looks like {what} (keys start with {prefix!r}), not an SD 1.x/2.x/XL one")
        sample = ", ".join(sorted(keys)[:3]) or "no tensors"
        raise ModelLoadError(f"no Stable Diffusion U-Net ({_CONV_IN}) in it; first keys: {sample}")
    in_ch = shapes[_CONV_IN][1]
    context = _context_dim(keys, shapes)
    if has[XL_REFINER_TE] and not has[XL_TE2]:
        raise ModelLoadError("it is an SDXL refiner (one OpenCLIP-bigG embedder, no CLIP-L), which is not supported")
    if has[XL_TE1] and has[XL_TE2]:
        family = Family.SDXL
    elif has[SD2_TE]:
        family = Family.SD2
    elif has[SD1_TE]:
        family = Family.SD1
    else:
        raise ModelLoadError(f"it has a U-Net (context {context}) but no text encoder this program knows")
    if in_ch not in (4, 9):  # 9: an inpainting model (latents + mask + masked-picture latents), engine/inpaint_unet
        kind = {8: "an instruct-pix2pix", 5: "a depth"}.get(in_ch, "a non-standard")
        raise ModelLoadError(
            f"it is {kind} {family.label} model ({in_ch} U-Net input channels), which is not supported"
        )
    if family == Family.SDXL and UNET_PREFIX + "label_emb.0.0.weight" not in shapes:
        raise ModelLoadError("it has SDXL text encoders but no U-Net label_emb (size conditioning)")
    return family, _prediction(family, keys, metadata, sidecar_yaml)


def _prediction(family: Family, keys: list[str], metadata: Mapping[str, str] | None, sidecar: str | None) -> str:
    if "v_pred" in keys:
        return "v"
    spec = (metadata or {}).get("modelspec.prediction_type", "").strip().lower()
    if spec in _PREDICTIONS:
        return spec
    if sidecar is not None:
        return "v" if re.search(r"parameterization:\s*[\"']?v[\"']?\s*$", sidecar, re.M) else "epsilon"
    return "v" if family == Family.SD2 else "epsilon"


def zero_terminal_snr(
    keys: Iterable[str], metadata: Mapping[str, str] | None = None, sidecar_yaml: str | None = None
) -> bool:
    """True when the checkpoint was trained with zero terminal SNR (see the module docstring for the cues)."""
    if "ztsnr" in keys:
        return True
    if (metadata or {}).get("ss_zero_terminal_snr", "").strip().lower() == "true":
        return True
    if sidecar_yaml is not None:
        return re.search(r"(zero_terminal_snr|rescale_betas_zero_snr):\s*[\"']?true", sidecar_yaml, re.I) is not None
    return False
