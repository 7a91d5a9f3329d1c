"""Bake LoRAs into a single-file checkpoint (``loradeck lora merge-into``), keeping its key layout and dtypes.

The checkpoint's tensors are renamed to diffusers names (``formats.ldm_keys``), put into empty-initialised models
without a copy (``load_state_dict(assign=True)``), merged by the same ``LoraPatcher`` that generation uses (so a baked
file draws what ``<lora:x:w>`` draws), renamed back and written atomically. Tensors no LoRA touches — the VAE, EMA
copies, ``position_ids`` and the rest — go back bit for bit, in the dtype they came in.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from loradeck.empty_init import empty_weights
from loradeck.errors import FormatError, InvalidRequest
from loradeck.formats.ldm_configs import infer_configs
from loradeck.formats.ldm_family import detect_checkpoint_family
from loradeck.formats.ldm_keys import TEXT_ENCODERS, to_diffusers, to_ldm
from loradeck.formats.pickle_safe import load_pickle_state_dict
from loradeck.formats.safetensors_io import load_tensors, read_header
from loradeck.lora.formats import load_lora
from loradeck.lora.keymap import keymap_from_models
from loradeck.lora.patcher import LoraPatcher, StackEntry
from loradeck.lora.report import StackReport

_PATCHER_NAMES = {"unet": "unet", "text_encoder": "te1", "text_encoder_2": "te2"}


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if path.suffix.lower() == ".safetensors":
        return load_tensors(path), dict(read_header(path).metadata)
    return load_pickle_state_dict(path), {}


def module_from_state(model_cls_or_factory, state: dict[str, torch.Tensor], path: Path, comp: str):
    """A model whose parameters ARE the given tensors (no copy, no random init)."""
    with empty_weights():
        model = model_cls_or_factory()
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:
        raise FormatError(path, f"its {comp} does not have the layout its keys suggest ({str(err)[:200]})") from None
    return model


def merge_into_checkpoint(checkpoint_path: str | Path, loras: Sequence[tuple], out_path: str | Path) -> StackReport:
    """Write ``out_path`` (.safetensors) = the checkpoint with ``loras`` [(file, weight[, BlockWeights]), ...] merged.

    The weight multiplies both the text-encoder and the U-Net part (A1111 ``<lora:name:weight>``), block weights
    (``lbw=``) each module's block as in generation. Returns the patcher's report (matched modules per file; a LoRA
    of another family is skipped with a warning).
    """
    src, out = Path(checkpoint_path), Path(out_path)
    if out.suffix.lower() != ".safetensors":
        raise InvalidRequest(f"merge-into writes .safetensors files; {out.name} has another extension.")
    state, metadata = read_checkpoint(src)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    family, prediction = detect_checkpoint_family(state.keys(), shapes, metadata=metadata)
    configs = infer_configs(shapes, family, prediction)
    order = list(state)
    components = to_diffusers(state, family)
    del state

    models = {
        "unet": module_from_state(
            lambda: UNet2DConditionModel.from_config(configs["unet"]), components["unet"], src, "unet"
        )
    }
    for comp, _prefix, kind in TEXT_ENCODERS[family]:
        cfg = CLIPTextConfig(**{k: v for k, v in configs[comp].items() if not k.startswith("_")})
        cls = CLIPTextModelWithProjection if kind == "openclip_proj" else CLIPTextModel
        models[comp] = module_from_state(lambda cfg=cfg, cls=cls: cls(cfg), components[comp], src, comp)

    patched = {_PATCHER_NAMES[c]: m for c, m in models.items()}
    keymap = keymap_from_models(family, models["unet"], {k: v for k, v in patched.items() if k != "unet"})
    patcher = LoraPatcher(patched, keymap, copy_share=0.0)  # nothing is restored: keep the lean undo
    entries = [(Path(p), float(w), rest[0] if rest else None) for p, w, *rest in loras]
    report = patcher.apply([StackEntry(load_lora(p), te=w, unet=w, block_weights=bw) for p, w, bw in entries])

    for comp, model in models.items():
        components[comp] = model.state_dict()
    merged = to_ldm(components, family)
    result = {k: merged[k].contiguous() for k in order}  # same keys as the input, nothing added or lost

    meta = dict(metadata)
    meta["loradeck.merged_loras"] = json.dumps(
        [[p.name, w] + ([f"lbw={bw.text}"] if bw is not None else []) for p, w, bw in entries]
    )
    tmp = out.with_name(out.name + ".tmp")
    try:
        save_file(result, str(tmp), metadata=meta)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return report
