"""Flux.1 base models: load (a diffusers folder, or a transformer file as distributed plus the other components),
merge LoRAs (the patcher over ``lora/flux_keys.py``'s names) and draw with diffusers' FluxPipeline.

Sampling is flow-matching Euler (``FlowMatchEulerDiscreteScheduler``, its shift / ``max_shift`` from the scheduler
config) with Flux-dev's distilled guidance — Forge's "Distilled CFG Scale", 3.5 by default — and no classifier-free
guidance (CFG 1). Everything is local: no hub look-ups (``local_files_only``); a missing T5 tokenizer is one
sentence naming where it was looked for.

Not wired into the studio yet: ``loradeck generate``/the API/the UI still load SD models only (services/models.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from loradeck.empty_init import BUILD_LOCK
from loradeck.errors import ModelLoadError
from loradeck.families import Family
from loradeck.formats.flux_file import bfl_to_diffusers, is_bfl_flux
from loradeck.lora.flux_keys import keymap_from_flux_models
from loradeck.lora.keymap import KeyMap

DISTILLED_CFG = 3.5  # Forge's and BFL's default for Flux-dev
PARTS = ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae", "scheduler")


@dataclass
class FluxModel:
    name: str
    path: Path
    transformer: Any
    vae: Any
    text_encoder: Any  # CLIP-L
    text_encoder_2: Any  # T5-XXL
    tokenizer: Any
    tokenizer_2: Any
    scheduler_config: dict[str, Any]
    layout: str = "diffusers"  # "diffusers" | "single-file"
    family: Family = Family.FLUX
    native_size: int = 1024
    extra: dict[str, Any] = field(default_factory=dict)

    def lora_components(self) -> dict[str, nn.Module]:
        """What the LoRA patcher may change: transformer, CLIP-L ("te1"), T5 ("te2")."""
        return {"transformer": self.transformer, "te1": self.text_encoder, "te2": self.text_encoder_2}

    def keymap(self) -> KeyMap:
        return keymap_from_flux_models(self.transformer, {"te1": self.text_encoder, "te2": self.text_encoder_2})

    def pipeline(self):
        from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

        return FluxPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler.from_config(self.scheduler_config),
            vae=self.vae,
            text_encoder=self.text_encoder,
            tokenizer=self.tokenizer,
            text_encoder_2=self.text_encoder_2,
            tokenizer_2=self.tokenizer_2,
            transformer=self.transformer,
        )


def load_flux(
    source: str | Path, *, components: str | Path | None = None, dtype: torch.dtype = torch.float32
) -> FluxModel:
    """A Flux model from a diffusers folder, or from a transformer file (BFL names, any storage dtype incl. fp8)
    whose CLIP-L, T5, tokenizers, VAE and scheduler come from ``components`` (a folder in diffusers' layout)."""
    path = Path(source).expanduser()
    if path.is_dir():
        parts = _parts(path, dtype)
        transformer = _from_pretrained("FluxTransformer2DModel", path / "transformer", dtype)
        return FluxModel(path.name, path, transformer, **parts)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such Flux model file or folder")
    if components is None:
        raise ModelLoadError(
            f"{path} holds only the Flux transformer: give the folder with its text encoders, tokenizers and VAE"
        )
    from diffusers import FluxTransformer2DModel
    from safetensors.torch import load_file

    state = load_file(str(path))
    if not is_bfl_flux(state):
        raise ModelLoadError(f"{path}: no Flux double_blocks tensors in it")
    converted, config, unused = bfl_to_diffusers(state, dtype)
    transformer = FluxTransformer2DModel(**config).to(dtype)
    missing, unexpected = transformer.load_state_dict(converted, strict=False)
    if missing:
        raise ModelLoadError(f"{path}: the Flux transformer lacks {len(missing)} tensors, e.g. {missing[0]}")
    model = FluxModel(path.stem, path, transformer.eval(), **_parts(Path(components).expanduser(), dtype))
    model.layout = "single-file"
    model.extra["unused_keys"] = unused
    return model


def _from_pretrained(cls_name: str, folder: Path, dtype: torch.dtype):
    import diffusers
    import transformers

    cls = getattr(diffusers, cls_name, None) or getattr(transformers, cls_name)
    if not folder.is_dir():
        raise ModelLoadError(f"{folder}: not found (a Flux model needs it)")
    try:
        if cls_name.endswith("Tokenizer") or cls_name.endswith("TokenizerFast"):
            return cls.from_pretrained(str(folder), local_files_only=True)
        with BUILD_LOCK:  # diffusers/transformers build on the meta device (see loradeck.empty_init)
            return cls.from_pretrained(str(folder), local_files_only=True, torch_dtype=dtype).eval()
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{folder}: could not read the {cls_name} there ({exc.__class__.__name__})") from None


def _parts(folder: Path, dtype: torch.dtype) -> dict[str, Any]:
    import json

    sched = folder / "scheduler" / "scheduler_config.json"
    if not sched.is_file():
        raise ModelLoadError(f"{sched}: not found (the Flux scheduler's shift settings)")
    return {
        "text_encoder": _from_pretrained("CLIPTextModel", folder / "text_encoder", dtype),
        "text_encoder_2": _from_pretrained("T5EncoderModel", folder / "text_encoder_2", dtype),
        "tokenizer": _from_pretrained("CLIPTokenizer", folder / "tokenizer", dtype),
        "tokenizer_2": _from_pretrained("T5TokenizerFast", folder / "tokenizer_2", dtype),
        "vae": _from_pretrained("AutoencoderKL", folder / "vae", dtype),
        "scheduler_config": json.loads(sched.read_text()),
    }


def draw_flux(
    model: FluxModel,
    prompt: str,
    *,
    width: int = 1024,
    height: int = 1024,
    steps: int = 20,
    seed: int = 0,
    distilled_cfg: float = DISTILLED_CFG,
    max_sequence_length: int = 512,
):
    """One picture (PIL) by flow-matching Euler with distilled guidance; LoRAs are whatever the patcher merged."""
    pipe = model.pipeline()
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(seed)
    with torch.no_grad():
        out = pipe(
            prompt,
            width=width,
            height=height,
            num_inference_steps=steps,
            guidance_scale=distilled_cfg,
            generator=generator,
            max_sequence_length=max_sequence_length,
            output_type="pil",
        )
    return out.images[0]
