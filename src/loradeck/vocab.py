"""The vocabulary every layer shares: what a caller asks the studio to do, what it gets back, how work reports
progress. Plain dataclasses (PIL for pictures), no torch, no state."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class Progress:
    """One progress event of a job, whatever its kind (the one shape every ``on_progress`` callback receives).

    ``step`` of ``total`` in ``unit`` (sampling steps, bytes, files); a generation also says which batch of how many.
    ``values`` carries kind-specific numbers (a training run's loss, lr, it/s, eta)."""

    step: int = 0
    total: int = 0
    unit: str = "steps"  # steps | bytes | files
    phase: str = ""  # e.g. "sample", "hires", "load", "cache", "train", "download", "scan"
    batch: int = 0  # generations: the batch in progress (0-based) …
    batches: int = 1  # … of this many
    first_image: int = 0  # generations: index in the job of the batch's first picture
    note: str = ""  # what is being worked on (a LoRA tool's module name)
    values: dict[str, float] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        """Share done, 0..1 (A1111: (job_no + step/steps) / job_count)."""
        inner = self.step / self.total if self.total else 0.0
        return min(1.0, (self.batch + inner) / max(1, self.batches))


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
    # What the job ran on, as structured fields (so no interface parses an infotext back)
    model_name: str | None = None  # A1111's "Model" (file stem, "demo")
    model_title: str | None = None  # A1111's sd_model_checkpoint title
    model_hash: str | None = None  # AutoV2, 10 hex
    sampler: str = ""
    schedule: str = ""
    width: int = 0
    height: int = 0
    stack_key: tuple = ()  # the LoRA-stack identity the queue used (GenerationPlan.stack_key)
    lora_hashes: str = ""  # A1111's "Lora hashes" value
    ti_hashes: str = ""  # A1111's "TI hashes" value: the textual-inversion embeddings the prompts used
    lora_recomputed: int = 0  # weights the patcher re-merged for this job (0: the stack was already merged)
    lora_coverage: list[Any] = field(default_factory=list)  # loradeck.lora.coverage.LoraCoverage, one per LoRA
    inpainting_model: bool = False  # drawn by a 9-channel inpainting U-Net (mask + masked-picture conditioning)
