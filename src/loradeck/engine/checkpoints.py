"""Load a base model — a single-file checkpoint (A1111/Civitai layout) or a diffusers folder — fully offline.

Single files: the family is read from the keys (``engine.family``), the configs are the shipped ones with the sizes
read from the shapes (``formats.ldm_configs``), the names are converted by ``formats.ldm_keys``. Each model is built
with empty (meta) parameters and filled with ``load_state_dict(strict=True, assign=True)`` from tensors read one at
a time and cast once to the target dtype, so peak memory stays near one copy of the model in that dtype.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from loradeck.empty_init import BUILD_LOCK, empty_weights
from loradeck.engine.checkpoint_files import CheckpointFile, open_checkpoint
from loradeck.engine.family import detect_checkpoint_family, sidecar_yaml, zero_terminal_snr
from loradeck.engine.tokenizers import find_tokenizers
from loradeck.errors import FormatError, LoradeckError, ModelLoadError
from loradeck.families import Family
from loradeck.formats.ldm_configs import infer_configs
from loradeck.formats.ldm_keys import TEXT_ENCODERS, KeyRule, ldm_tensor_to_diffusers, plan_to_diffusers

PREDICTIONS = {"epsilon": "epsilon", "v": "v_prediction", "v_prediction": "v_prediction"}


@dataclass
class BaseModel:
    """Everything a pipeline needs from a base model, plus where it came from."""

    family: Family
    name: str  # file stem / folder name, as A1111 shows it
    path: Path
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    text_encoder_2: CLIPTextModelWithProjection | None
    tokenizer: CLIPTokenizer
    tokenizer_2: CLIPTokenizer | None
    scheduler_config: dict[str, Any]
    prediction_type: str  # diffusers' words: "epsilon" | "v_prediction"
    sample_size: int  # native picture side in pixels (512, 768, 1024)
    configs: dict[str, dict] = field(default_factory=dict)  # component → config used to build it
    layout: str = "single-file"  # "single-file" | "diffusers"


def load_base_model(
    source: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    tokenizer_dir: str | Path | None = None,
    prediction: str | None = None,
) -> BaseModel:
    """Load a ``.safetensors``/``.ckpt`` checkpoint or a diffusers folder; ``prediction`` ("v"/"epsilon") forces it.

    Raises FormatError (unreadable file) or ModelLoadError (unsupported model, missing tokenizer), each naming
    the source.
    """
    with BUILD_LOCK:  # diffusers and transformers build on the meta device too (see loradeck.empty_init)
        return _load(Path(source).expanduser(), device, dtype, tokenizer_dir, prediction)


def _load(path: Path, device, dtype: torch.dtype, tokenizer_dir, prediction: str | None) -> BaseModel:
    if prediction is not None and prediction not in PREDICTIONS:
        raise ModelLoadError(f"unknown prediction type {prediction!r} (use 'v' or 'epsilon')")
    if path.is_dir():
        return _load_diffusers_folder(path, device, dtype, prediction)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such checkpoint file or folder")
    tok_dir = Path(tokenizer_dir).expanduser() if tokenizer_dir is not None else None
    with open_checkpoint(path) as ckpt:
        return _load_single_file(ckpt, device, dtype, tok_dir, prediction)


# ------------------------------------------------------------------------------------------------ single file
def _load_single_file(
    ckpt: CheckpointFile, device: str | torch.device, dtype: torch.dtype, tok_dir: Path | None, forced: str | None
) -> BaseModel:
    path = ckpt.path
    try:
        family, pred = detect_checkpoint_family(
            ckpt.shapes.keys(), ckpt.shapes, metadata=ckpt.metadata, sidecar_yaml=sidecar_yaml(path)
        )
    except ModelLoadError as err:
        raise ModelLoadError(f"{path}: {err}") from None
    if forced is not None:
        pred = "v" if PREDICTIONS[forced] == "v_prediction" else "epsilon"
    # The tokenizer first: a missing one is the common failure and should not cost a model load.
    tokenizer, tokenizer_2 = find_tokenizers(family, path, tok_dir)
    zero_snr = zero_terminal_snr(ckpt.shapes.keys(), ckpt.metadata, sidecar_yaml(path))
    try:
        configs = infer_configs(ckpt.shapes, family, pred, zero_snr)
    except (KeyError, StopIteration, ValueError, IndexError) as err:
        raise ModelLoadError(f"{path}: the {family.label} key layout is incomplete (missing {err})") from None
    for comp, tok in (("text_encoder", tokenizer), ("text_encoder_2", tokenizer_2)):
        if tok is not None and comp in configs:
            # CLIP pools at the first end-of-text token; its id comes from the tokenizer, not the file.
            configs[comp].update(
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
            )
    rules, _unused = plan_to_diffusers(ckpt.shapes.keys(), family)
    by_comp: dict[str, list[KeyRule]] = {}
    for rule in rules:
        by_comp.setdefault(rule.component, []).append(rule)

    def build(comp: str, make):
        with empty_weights():
            model = make()
        return _fill(model, comp, by_comp.get(comp, []), ckpt, device, dtype)

    unet = build("unet", lambda: UNet2DConditionModel.from_config(configs["unet"]))
    vae = build("vae", lambda: AutoencoderKL.from_config(configs["vae"]))
    te_cls = {"clip": CLIPTextModel, "openclip": CLIPTextModel, "openclip_proj": CLIPTextModelWithProjection}
    encoders = {}
    for comp, _prefix, kind in TEXT_ENCODERS[family]:
        cfg = CLIPTextConfig(**{k: v for k, v in configs[comp].items() if not k.startswith("_")})
        encoders[comp] = build(comp, lambda cfg=cfg, cls=te_cls[kind]: cls(cfg))
    scheduler = configs["scheduler"]
    return BaseModel(
        family=family,
        name=path.stem,
        path=path,
        unet=unet,
        vae=vae,
        text_encoder=encoders["text_encoder"],
        text_encoder_2=encoders.get("text_encoder_2"),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        scheduler_config=scheduler,
        prediction_type=scheduler["prediction_type"],
        sample_size=_pixels(configs["unet"], configs["vae"]),
        configs=configs,
    )


def _fill(model, comp: str, rules: list[KeyRule], ckpt: CheckpointFile, device, dtype) -> Any:
    """Load the component's tensors (cast once to ``dtype``) into a meta-initialised model."""
    state: dict[str, torch.Tensor] = {}
    for rule in rules:
        t = ckpt.get(rule.ldm_key)
        if t.is_floating_point() and t.dtype != dtype:
            t = t.to(dtype)
        for key, part in zip(rule.keys, ldm_tensor_to_diffusers(rule, t), strict=True):
            state[key] = part
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])[:400]
        raise ModelLoadError(f"{ckpt.path}: its {comp} does not fit the detected model ({detail})") from None
    state.clear()
    for module in model.modules():  # buffers were built for real (not on meta) in float32; match the weights
        for name, buf in module._buffers.items():
            if buf is not None and buf.is_floating_point() and buf.dtype != dtype:
                module._buffers[name] = buf.to(dtype)
    return model.to(device).eval().requires_grad_(False)


def _pixels(unet_config: dict, vae_config: dict) -> int:
    return int(unet_config["sample_size"]) * 2 ** (len(vae_config["block_out_channels"]) - 1)


# ------------------------------------------------------------------------------------------------ diffusers folder
def _family_of_folder(folder: Path, te_config: dict, has_te2: bool) -> Family:
    if has_te2:
        return Family.SDXL
    width = te_config.get("hidden_size")
    if width == 768:
        return Family.SD1
    if width == 1024:
        return Family.SD2
    demo = Path(__file__).resolve().parents[1] / "demo"
    return Family.DEMO if demo in folder.resolve().parents else Family.UNKNOWN


def _load_diffusers_folder(folder: Path, device, dtype: torch.dtype, forced: str | None) -> BaseModel:
    import json

    if not (folder / "unet" / "config.json").is_file() or not (folder / "text_encoder" / "config.json").is_file():
        raise ModelLoadError(f"{folder}: not a diffusers Stable Diffusion folder (no unet/ and text_encoder/ configs)")
    opts = dict(local_files_only=True, torch_dtype=dtype)
    has_te2 = (folder / "text_encoder_2" / "config.json").is_file()
    try:
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", **opts)
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", **opts)
        text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", **opts)
        text_encoder_2 = (
            CLIPTextModelWithProjection.from_pretrained(folder, subfolder="text_encoder_2", **opts) if has_te2 else None
        )
        tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", local_files_only=True)
        tokenizer_2 = (
            CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer_2", local_files_only=True) if has_te2 else None
        )
        scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    except LoradeckError:
        raise
    except Exception as err:
        raise ModelLoadError(f"{folder}: cannot load the diffusers folder ({type(err).__name__}: {err})") from err
    if forced is not None:
        scheduler_config["prediction_type"] = PREDICTIONS[forced]
    configs = {
        "unet": dict(unet.config),
        "vae": dict(vae.config),
        "text_encoder": text_encoder.config.to_dict(),
        "scheduler": scheduler_config,
    }
    if text_encoder_2 is not None:
        configs["text_encoder_2"] = text_encoder_2.config.to_dict()
    models = [m for m in (unet, vae, text_encoder, text_encoder_2) if m is not None]
    for m in models:
        m.to(device).eval().requires_grad_(False)
    return BaseModel(
        family=_family_of_folder(folder, configs["text_encoder"], has_te2),
        name=folder.name,
        path=folder,
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        scheduler_config=scheduler_config,
        prediction_type=scheduler_config.get("prediction_type", "epsilon"),
        sample_size=_pixels(configs["unet"], configs["vae"]),
        configs=configs,
        layout="diffusers",
    )


__all__ = ["BaseModel", "load_base_model", "FormatError", "ModelLoadError"]
