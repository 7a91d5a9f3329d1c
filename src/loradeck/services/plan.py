"""A generation planned once, before it waits in the queue: ``plan_generation(request, …) → GenerationPlan``.

The plan holds every decision that does not need the model's weights — the prompt after styles, the LoRA stack
resolved in the library and its identity key, the request checked against the limits, sampler and schedule, the
seeds, the hires pass, the infotext's fixed fields — so the queue orders jobs by the stack they really need (a style
may add LoRA tags), interfaces learn of a bad request at once, and nothing downstream re-parses the prompt.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from loradeck.demo.draw_size import DemoDraw, shrink_for_demo
from loradeck.engine.hires import resolve_upscaler, target_size
from loradeck.engine.schedulers import resolve_sampler_schedule
from loradeck.engine.upscalers import find_model_upscalers as model_upscalers
from loradeck.errors import LoradeckError
from loradeck.families import Family
from loradeck.library.triggers import add_trigger_words, missing_trigger_words, trigger_warning
from loradeck.lora.block_weights import BlockWeights, load_presets
from loradeck.lora.block_weights import resolve as resolve_block_weights
from loradeck.prompt.styles import apply_styles, read_styles
from loradeck.prompt.tags import LoraTag, normalize_weights, parse_prompt, rewrite_tag_weights
from loradeck.services.inpaint import check_inpaint
from loradeck.services.limits import check_hires_size, check_request
from loradeck.settings import Settings
from loradeck.vocab import GenerationRequest, HiresFix

if TYPE_CHECKING:
    from loradeck.library import Library
    from loradeck.library.entries import LoraEntry

DEMO = "demo"
MAX_SEED = 4294967294  # A1111: random.randrange(4294967294)

StackKey = tuple[Hashable, ...]


@dataclass(frozen=True)
class Checkpoint:
    """The base model a job runs on, as far as planning needs it."""

    title: str  # A1111's sd_model_checkpoint title; "demo" for the embedded model
    family: Family
    native_size: int
    base_model: str | None = None  # Civitai's base-model label (Pony, Illustrious, …) when the library knows it


@dataclass(frozen=True)
class LoraChoice:
    """One ``<lora:…>`` tag resolved to a library file (with its ``lbw=`` block weights, when given)."""

    tag: LoraTag
    entry: LoraEntry
    block_weights: BlockWeights | None = None

    @property
    def path(self) -> Path:
        return Path(self.entry.path)

    @property
    def hash_field(self) -> str | None:
        """``name: hash12`` for A1111's "Lora hashes" (None when the file has no hash yet)."""
        short = self.entry.lora_hash
        return f"{self.tag.name.replace(':', '').replace(',', '')}: {short[:12]}" if short else None


@dataclass(frozen=True)
class HiresPlan:
    upscaler: str  # the one that will be used (a model upscaler falls back to Lanczos)
    width: int
    height: int
    steps: int
    denoising_strength: float
    request: HiresFix  # what was asked (what the infotext records)
    sampler: tuple[str, str] | None = None  # (sampler, schedule) of the second pass; None: the first pass's
    models_root: Path | None = None  # <home>/models, where model upscalers (ESRGAN, …) live


@dataclass(frozen=True)
class GenerationPlan:
    request: GenerationRequest  # after styles, with the seeds drawn: planning it again gives the same plan
    checkpoint: Checkpoint
    clean_prompt: str  # what the text encoder sees (tags removed, trigger words added if asked)
    recorded_prompt: str  # what the infotext records (tags kept, effective weights)
    negative_text: str  # the negative prompt without tags (a negative prompt never activates a LoRA)
    loras: tuple[LoraChoice, ...]
    sampler: str
    schedule: str
    width: int
    height: int
    seeds: tuple[int, ...]
    subseeds: tuple[int, ...] | None
    hires: HiresPlan | None
    warnings: tuple[str, ...] = field(default=())
    demo: DemoDraw | None = None  # the demo model draws smaller than asked and upscales (demo/draw_size.py)
    not_applied: tuple[tuple[str, str], ...] = ()  # (LoRA name, why it is left out): unknown, other family

    @property
    def stack_key(self) -> StackKey:
        """(checkpoint, ((path, te, unet, dyn), …)): equal keys run on the same merged weights, so one job may follow
        another without a merge. The queue orders by it; a Ray router may steer by it."""
        return (
            self.checkpoint.title,
            tuple((str(c.path), c.tag.te, c.tag.unet, c.tag.dyn, c.tag.lbw, repr(c.tag.schedule)) for c in self.loras),
        )

    @property
    def lora_hashes(self) -> str:
        return ", ".join(h for c in self.loras if (h := c.hash_field))

    @property
    def kind(self) -> str:
        return "img2img" if self.request.init_image is not None else "txt2img"


def plan_generation(
    request: GenerationRequest, *, checkpoint: Checkpoint, library: Library, settings: Settings
) -> GenerationPlan:
    """Check, resolve and fix every choice of ``request`` on ``checkpoint``. Raises InvalidRequest (one sentence);
    an unknown LoRA or one for another family is a warning, and the picture is drawn with the rest (A1111)."""
    warnings: list[str] = []
    if request.styles:  # before anything reads the prompt: a style may bring LoRA tags (A1111's order)
        styled, styled_negative, style_warnings = apply_styles(
            request.prompt, request.negative_prompt, request.styles, read_styles(settings.styles_path)
        )
        warnings += style_warnings
        request = replace(request, prompt=styled, negative_prompt=styled_negative, styles=[])
    check_request(request, settings.limits)  # after the styles: they lengthen the prompt
    sampler, schedule = resolve_sampler_schedule(request.sampler, request.scheduler)
    request = _with_seeds(request)

    parsed = parse_prompt(request.prompt)
    warnings += parsed.warnings
    tags = normalize_weights(parsed.loras) if request.normalize_lora_weights else parsed.loras
    recorded = rewrite_tag_weights(request.prompt, tags) if request.normalize_lora_weights else request.prompt
    not_applied: dict[str, str] = {}
    presets = load_presets(settings.lbw_presets_path) if any(t.lbw for t in tags) else {}
    loras = _resolve(tags, library, checkpoint, presets, warnings, not_applied)
    clean = parsed.text
    active = [c.entry for c in loras]
    if request.add_trigger_words:
        clean, recorded = add_trigger_words(clean, active), add_trigger_words(recorded, active)
    else:
        warnings += [trigger_warning(entry, words) for entry, words in missing_trigger_words(clean, active)]
    negative = parse_prompt(request.negative_prompt, negative=True)
    warnings += negative.warnings

    if request.inpaint is not None and request.init_image is not None:
        check_inpaint(request.inpaint)
    width = request.width or checkpoint.native_size
    height = request.height or checkpoint.native_size
    total = request.batch_size * request.batch_count
    seeds = tuple(request.seed + i for i in range(total))
    subseeds = tuple(request.variation_seed + i for i in range(total)) if request.variation_strength > 0 else None
    hires = _plan_hires(request, width, height, settings, warnings)
    demo = None
    if checkpoint.family is Family.DEMO:  # a pixel-space model: draw near its native size, upscale (draw_size.py)
        hires, demo = shrink_for_demo(width, height, hires, checkpoint.native_size, warnings)
        if demo is not None:
            width, height = demo.drawn
    return GenerationPlan(
        request=request,
        checkpoint=checkpoint,
        clean_prompt=clean,
        recorded_prompt=recorded,
        negative_text=negative.text,
        loras=tuple(loras),
        sampler=sampler,
        schedule=schedule,
        width=width,
        height=height,
        seeds=seeds,
        subseeds=subseeds,
        hires=hires,
        warnings=tuple(warnings),
        not_applied=tuple(not_applied.items()),
        demo=demo,
    )


def _with_seeds(request: GenerationRequest) -> GenerationRequest:
    """-1 seeds drawn now, so the plan (and a plan made again from its request) is fixed."""
    seed = request.seed if request.seed >= 0 else random.randrange(MAX_SEED)
    sub = request.variation_seed if request.variation_seed >= 0 else random.randrange(MAX_SEED)
    return replace(request, seed=seed, variation_seed=sub)


def _resolve(
    tags: Sequence[LoraTag],
    library: Library,
    checkpoint: Checkpoint,
    presets: dict[str, str],
    warnings: list[str],
    not_applied: dict[str, str],
) -> list[LoraChoice]:
    """The compatibility check is by architecture (family): another family's LoRA is skipped with one warning; a
    LoRA made for another model of the same architecture (Pony on Illustrious) is applied, with a note."""
    family = checkpoint.family
    choices = []
    for tag in tags:
        block_weights = resolve_block_weights(tag.lbw, presets, tag.text) if tag.lbw else None  # bad lbw= refuses
        try:
            entry = library.resolve_lora(tag.name)
        except LoradeckError as exc:  # unknown name: say so, go on with the rest (A1111 does; Forge crashes)
            _not_applied(tag.name, str(exc), warnings, not_applied)
            continue
        if Family.UNKNOWN not in (entry.family, family) and entry.family != family:
            why = f"LoRA {tag.name} is for {Family(entry.family).label} but the model is {family.label}; skipped."
            _not_applied(tag.name, why, warnings, not_applied)
            continue
        note = _base_model_note(tag.name, getattr(entry, "base_model", None), checkpoint)
        if note and note not in warnings:
            warnings.append(note)
        choices.append(LoraChoice(tag, entry, block_weights))
    return choices


def _not_applied(name: str, why: str, warnings: list[str], not_applied: dict[str, str]) -> None:
    """One warning per LoRA left out, however many tags name it."""
    if name not in not_applied:
        warnings.append(not_applied.setdefault(name, why))


def _base_model_note(name: str, lora_base: str | None, checkpoint: Checkpoint) -> str | None:
    model_base = checkpoint.base_model
    if not lora_base or not model_base or lora_base.strip().lower() == model_base.strip().lower():
        return None
    if Family.from_label(lora_base) is not Family.from_label(model_base):
        return None  # labels of different architectures: the family check above speaks for the files' keys
    return (
        f"LoRA {name} was made for {lora_base} and the model is {model_base} (the same {checkpoint.family.label} "
        "architecture): applied, but it may look different than on its own base."
    )


def _plan_hires(
    request: GenerationRequest, width: int, height: int, settings: Settings, warnings: list[str]
) -> HiresPlan | None:
    """The hires fix to run, or None (not asked, or img2img). A warning is added when the upscaler falls back."""
    hr = request.hires
    if hr is None or request.init_image is not None:
        return None
    models_root = settings.home / "models"
    upscaler, warning = resolve_upscaler(hr.upscaler, model_upscalers(models_root))
    if warning:
        warnings.append(warning)
    tw, th = target_size(width, height, hr.scale, hr.resize_x, hr.resize_y)
    check_hires_size(tw, th, settings.limits)
    sampler = None
    if hr.sampler or hr.scheduler:  # A1111's "Hires sampler"; an unset one means the first pass's
        sampler = resolve_sampler_schedule(hr.sampler or request.sampler, hr.scheduler or request.scheduler)
    return HiresPlan(upscaler, tw, th, hr.steps or request.steps, hr.denoising_strength, hr, sampler, models_root)
