"""What a caller asks the studio to do, and what it gets back (typed, shared by CLI, server and UI)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image


@dataclass
class HiresFix:
    """A1111's hires fix: a second img2img pass at a larger size (``loradeck.engine.hires``)."""

    scale: float = 2.0
    upscaler: str = "Latent"
    steps: int = 0  # 0 = as many as the first pass
    denoising_strength: float = 0.7
    resize_x: int = 0  # a fixed size instead of ``scale`` (one side 0 keeps the aspect)
    resize_y: int = 0
    sampler: str | None = None  # None: the first pass's sampler
    scheduler: str | None = None  # None: the first pass's schedule type


@dataclass
class Inpaint:
    """A1111's inpainting (img2img with a mask, ``loradeck.engine.inpaint``); white in the mask = redraw."""

    mask: Image.Image
    blur: int = 4  # mask_blur, px
    fill: int = 1  # inpainting_fill: 0 fill, 1 original, 2 latent noise, 3 latent nothing
    full_res: bool = False  # inpaint_full_res ("Only masked")
    padding: int = 32  # inpaint_full_res_padding, px
    invert: bool = False  # inpainting_mask_invert: redraw what is black


@dataclass
class GenerationRequest:
    prompt: str
    negative_prompt: str = ""
    seed: int = -1  # -1 = random; image i of the job uses seed + i
    variation_seed: int = -1  # A1111's subseed: -1 = random; image i uses variation_seed + i
    variation_strength: float = 0.0  # 0 = no variation
    steps: int = 20
    cfg_scale: float = 7.0
    sampler: str = "Euler a"
    scheduler: str = "Automatic"
    width: int | None = None  # None = the model's native size
    height: int | None = None
    batch_size: int = 1
    batch_count: int = 1
    clip_skip: int = 1
    init_image: Image.Image | None = None  # img2img when set
    denoising_strength: float = 0.75
    checkpoint: str | None = None  # None = whatever is loaded (the demo model at first)
    normalize_lora_weights: bool = False
    add_trigger_words: bool = False
    save: bool = True
    hires: HiresFix | None = None  # txt2img only
    styles: list[str] = field(default_factory=list)  # A1111 styles from <home>/styles.csv, merged in this order
    inpaint: Inpaint | None = None  # img2img only: redraw the masked part of init_image
    noise_multiplier: float = 1.0  # img2img: A1111's initial_noise_multiplier (scales the noise added to init_image)
    tiling: bool = False  # A1111's Tiling: circular padding in the U-Net and VAE, the picture tiles seamlessly


@dataclass
class GeneratedImage:
    image: Image.Image
    seed: int
    infotext: str
    path: Path | None = None


@dataclass
class GenerationResult:
    images: list[GeneratedImage]
    prompt: str  # the prompt as recorded (tags kept, effective weights)
    negative_prompt: str
    seeds: list[int]
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False
