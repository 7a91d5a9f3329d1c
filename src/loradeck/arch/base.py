"""What every model family declares (``Arch``): data and small pure functions, no model code.

Each family module (sd1, sd2, sdxl, demo, flux) holds one ``Arch``; ``loradeck.arch.registry`` maps family → it.
Code above loops over an Arch's components and reads its numbers instead of branching on the family. The package
sits at the bottom layer (beside ``families``) so every layer can read it; the machinery that builds models and
key maps (engine/, lora/keymap.py, lora/flux_keys.py) reads these declarations.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from loradeck.families import Family


@dataclass(frozen=True)
class Component:
    """One part of a base model: our name (the patcher's and keymap's), the diffusers folder/attribute name, what
    it is, and the kohya LoRA prefix of its modules ("" when LoRAs do not name it)."""

    name: str  # "unet" | "transformer" | "te1" | "te2" | "vae"
    folder: str  # diffusers: "unet", "transformer", "text_encoder", "text_encoder_2", "vae"
    kind: str  # "unet" | "mmdit" | "clip" | "openclip" | "t5" | "vae"
    lora_prefix: str = ""


@dataclass(frozen=True)
class Arch:
    family: Family
    components: tuple[Component, ...]
    native_size: int  # picture side in pixels the family was trained at
    config_dir: str | None  # folder under loradeck/configs with its shipped configs
    default_sampler: str
    default_schedule: str  # A1111 schedule type ("Automatic" = the sampler's own)
    # single-file checkpoint: a key that only this family's files carry (any of them)
    checkpoint_markers: tuple[str, ...] = ()
    # LoRA module names that only this family's LoRAs carry (regex prefixes, matched after normalisation)
    lora_name_markers: tuple[str, ...] = ()
    unet_names: str = "diffusers"  # canonical U-Net LoRA spelling: "diffusers" (SD1/SD2) | "sgm" (SDXL) | "bfl"
    guidance: str = "cfg"  # "cfg" (classifier-free) | "distilled" (Flux-dev's embedded guidance)
    prediction: str = "epsilon"  # default prediction ("epsilon" | "v" | "flow")
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def denoiser(self) -> Component:
        return next(c for c in self.components if c.kind in ("unet", "mmdit"))

    @property
    def text_encoders(self) -> tuple[Component, ...]:
        return tuple(c for c in self.components if c.kind in ("clip", "openclip", "t5"))

    def component(self, name: str) -> Component | None:
        return next((c for c in self.components if c.name == name), None)

    def is_checkpoint(self, keys: Iterable[str]) -> bool:
        """True when a single-file checkpoint's keys carry one of this family's markers."""
        return any(k.startswith(self.checkpoint_markers) for k in keys) if self.checkpoint_markers else False

    def lora_prefix_of(self, component: str) -> str:
        c = self.component(component)
        return c.lora_prefix if c else ""
