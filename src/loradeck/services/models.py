"""A base model in memory with the runner and the LoRA patcher built over it (``load_model``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from loradeck.demo.paths import DEMO, demo_model_dir, demo_model_hash
from loradeck.engine.checkpoints import BaseModel, load_base_model
from loradeck.engine.devices import pick_device, pick_dtype
from loradeck.engine.pipeline import Components, Runner
from loradeck.errors import LoradeckError, ModelLoadError
from loradeck.families import Family
from loradeck.lora import LoraPatcher, keymap_from_models
from loradeck.settings import Settings


@dataclass(frozen=True)
class ModelSource:
    """Where a base model comes from, as the library (or the package, for the demo) knows it."""

    title: str  # A1111's sd_model_checkpoint title
    path: Path
    short_hash: str | None  # AutoV2, 10 hex (A1111's "Model hash")
    family: Family  # as the library detected it (UNKNOWN when it could not)

    @classmethod
    def demo(cls) -> ModelSource:
        return cls(DEMO, demo_model_dir(), demo_model_hash(), Family.DEMO)


@dataclass
class LoadedModel:
    """A base model in memory, with what the studio needs to generate and to describe it."""

    name: str  # file stem (A1111's "Model")
    title: str
    path: Path
    family: Family
    short_hash: str | None
    base: BaseModel
    runner: Runner
    patcher: LoraPatcher

    @property
    def native_size(self) -> int:
        return self.runner.c.native_size


def load_model(source: ModelSource, settings: Settings) -> LoadedModel:
    """Load ``source`` on the settings' device; any failure is one ModelLoadError sentence naming the file."""
    is_demo = source.title == DEMO
    device = pick_device(settings.device)
    dtype = torch.float32 if is_demo else pick_dtype(settings.dtype, device)
    try:
        base = load_base_model(source.path, device=device, dtype=dtype, tokenizer_dir=settings.tokenizer_dir)
    except LoradeckError:
        raise
    except Exception as exc:  # a broken file must not take the studio down
        raise ModelLoadError(f"Could not load the model {source.path}: {exc}") from exc
    family = Family.DEMO if is_demo else base.family
    if family is Family.UNKNOWN:  # e.g. a diffusers folder whose model_index.json declares loradeck_family
        family = base.family = source.family
    components = Components(
        unet=base.unet,
        vae=base.vae,
        text_encoder=base.text_encoder,
        tokenizer=base.tokenizer,
        text_encoder_2=base.text_encoder_2,
        tokenizer_2=base.tokenizer_2,
        scheduler_config=dict(base.scheduler_config),
    )
    runner = Runner(components, device, dtype)
    encoders: dict[str, torch.nn.Module] = {"te1": base.text_encoder} | (
        {"te2": base.text_encoder_2} if base.text_encoder_2 else {}
    )
    unet: Any = base.unet  # diffusers' models are torch Modules; their stubs do not say so
    modules: dict[str, torch.nn.Module] = {"unet": unet, **encoders}
    patcher = LoraPatcher(
        modules,
        keymap_from_models(family, base.unet, encoders),
        copy_share=settings.lora_copy_share,
    )
    pipe: Any = runner.txt2img  # diffusers' pipeline mixins are not typed
    if settings.attention_slicing:
        pipe.enable_attention_slicing()
    if settings.cpu_offload and device.type == "cuda":
        pipe.enable_model_cpu_offload()
    return LoadedModel(
        name=DEMO if is_demo else source.path.stem,
        title=source.title,
        path=source.path,
        family=family,
        short_hash=source.short_hash,
        base=base,
        runner=runner,
        patcher=patcher,
    )
