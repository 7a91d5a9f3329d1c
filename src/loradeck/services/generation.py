"""Run a ``GenerationPlan`` on a loaded model: merge its LoRA stack, encode, draw batch by batch, save, describe.

Called only from a device-queue job (``Studio``), so one generation runs at a time and holds the patcher's lock
while it merges and samples: no other stack can change the weights under it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from PIL import Image

from loradeck.engine.conditioning import PromptSchedules, encode_prompts
from loradeck.engine.hires import LATENT_UPSCALERS, hires_pass
from loradeck.engine.outputs import output_folder, save_png
from loradeck.engine.tiling import circular_padding
from loradeck.errors import Cancelled, LoradeckError
from loradeck.library.embeddings import EmbeddingEntry
from loradeck.lora import LoraFile, StackEntry
from loradeck.lora.coverage import coverage_of
from loradeck.lora.sidecar import LoraSidecar, ScheduledLora
from loradeck.prompt.editing import prompt_schedule
from loradeck.prompt.infotext import format_infotext
from loradeck.services.embeddings import job_embeddings
from loradeck.services.inpaint import inpaint_infotext, inpaint_pass
from loradeck.services.models import LoadedModel
from loradeck.services.plan import GenerationPlan
from loradeck.version import __version__
from loradeck.vocab import GeneratedImage, GenerationResult, Progress


class Control(Protocol):
    """What a running generation polls and reports to (a queue ``Job``)."""

    interrupted: Any  # threading.Event
    skipped: Any

    def report(self, progress: Progress) -> None: ...


def run_plan(
    plan: GenerationPlan,
    model: LoadedModel,
    job: Control,
    *,
    load_lora: Callable[[Path], LoraFile],
    outputs: Path,
    keep_latents: Callable[[torch.Tensor], None],
    embeddings: Sequence[EmbeddingEntry] = (),
) -> GenerationResult:
    """Every batch of ``plan`` on ``model``; an interrupt ends the job with the pictures drawn so far.
    ``embeddings``: the embeddings folder's entries (``services/embeddings.py`` picks the ones that fit)."""
    with model.patcher.lock:
        stack, scheduled, not_applied, warnings = _stack(plan, load_lora)
        report = model.patcher.apply(stack)
        warnings += list(report.warnings)
        coverage = coverage_of(report, not_applied)
        # scheduled LoRAs: their U-Net part runs beside the merged weights, for this job only (lora/sidecar.py)
        unet: Any = model.base.unet
        sidecar = LoraSidecar(unet, model.patcher.keymap, scheduled) if scheduled else None
        request = plan.request
        positive = prompt_schedule(plan.clean_prompt, request.steps)
        negative = prompt_schedule(plan.negative_text, request.steps)
        ti = job_embeddings(
            model.family, model.base.tokenizer, [t for _, t in positive], [t for _, t in negative], embeddings,
            [entry.lora for entry in stack],
        )  # fmt: skip
        warnings += list(ti.warnings)
        schedules = PromptSchedules(
            lambda pos, neg: encode_prompts(
                model.base, pos, neg, clip_skip=request.clip_skip, embeddings=ti.loaded or None
            ),
            positive,
            negative,
        )
        folder = output_folder(outputs, plan.kind)
        images: list[GeneratedImage] = []
        interrupted = False
        try:
            for b in range(request.batch_count):
                try:
                    drawn = _draw_batch(plan, model, schedules, b, job, folder, keep_latents, sidecar, ti.ti_hashes)
                except Cancelled:
                    interrupted = True
                    break
                images += drawn or []  # None: the batch was skipped
        finally:
            if sidecar is not None:
                sidecar.remove()
    return GenerationResult(
        images=images,
        prompt=plan.recorded_prompt,
        negative_prompt=request.negative_prompt,
        seeds=list(plan.seeds),
        warnings=list(plan.warnings) + warnings,
        interrupted=interrupted,
        model_name=model.name,
        model_title=model.title,
        model_hash=model.short_hash,
        sampler=plan.sampler,
        schedule=plan.schedule,
        width=plan.width,
        height=plan.height,
        stack_key=plan.stack_key,
        lora_hashes=plan.lora_hashes,
        ti_hashes=ti.ti_hashes,
        lora_recomputed=report.recomputed,
        lora_coverage=coverage,
        inpainting_model=model.runner.nine is not None,
    )


def _stack(
    plan: GenerationPlan, load_lora: Callable[[Path], LoraFile]
) -> tuple[list[StackEntry], list[ScheduledLora], dict[str, str], list[str]]:
    """(what to merge, what runs scheduled beside it, LoRAs left out → why, warnings) for the plan's LoRAs."""
    stack, scheduled, warnings = [], [], []
    not_applied = dict(plan.not_applied)
    for choice in plan.loras:
        tag = choice.tag
        try:
            lora = load_lora(choice.path)
        except LoradeckError as exc:
            warnings.append(not_applied.setdefault(tag.name, str(exc)))
            continue
        if tag.dyn is not None:
            lora = lora.truncated(tag.dyn)
        if tag.schedule is not None:  # its U-Net weight changes per step: not merged, a sidecar instead
            scheduled.append(ScheduledLora(lora, tag.schedule.weight_at, choice.block_weights))
        unet = 0.0 if tag.schedule is not None else tag.unet
        stack.append(StackEntry(lora, tag.te, unet, choice.block_weights))
    return stack, scheduled, not_applied, warnings


def _draw_batch(
    plan: GenerationPlan,
    model: LoadedModel,
    schedules: PromptSchedules,
    b: int,
    job: Control,
    folder: Path,
    keep_latents: Callable[[torch.Tensor], None],
    sidecar: LoraSidecar | None,
    ti_hashes: str = "",
) -> list[GeneratedImage] | None:
    """Batch ``b`` of the plan: pictures saved with their infotexts; None when skipped; raises Cancelled."""
    request = plan.request
    batch = slice(b * request.batch_size, (b + 1) * request.batch_size)
    seeds = list(plan.seeds[batch])
    subseeds = list(plan.subseeds[batch]) if plan.subseeds else None
    variation = (subseeds, request.variation_strength) if subseeds else None

    def progress(step: int, steps: int) -> None:
        job.report(
            Progress(step, steps, phase="sample", batch=b, batches=request.batch_count, first_image=batch.start or 0)
        )

    common: dict[str, Any] = dict(
        cond=schedules.at(0),
        cfg_scale=request.cfg_scale,
        sampler=plan.sampler,
        schedule=plan.schedule,
        job=job,
        on_latents=keep_latents,
        cond_at=schedules.at if schedules.changes else None,
        step_hook=sidecar.set_step if sidecar is not None else None,
    )
    parts: list[Any] = [model.base.unet, model.base.vae]
    with circular_padding(*parts, enabled=request.tiling):
        pictures = _passes(plan, model, seeds, variation, progress, common)
    if pictures is None:
        return None
    assert isinstance(pictures, list)
    images = []
    for i, (seed, picture) in enumerate(zip(seeds, pictures, strict=True)):
        infotext = infotext_for(plan, model, seed, subseeds[i] if subseeds else None, ti_hashes)
        path = save_png(picture, folder, seed, infotext) if request.save else None
        images.append(GeneratedImage(picture, seed, infotext, path))
    return images


def _passes(
    plan: GenerationPlan,
    model: LoadedModel,
    seeds: list[int],
    variation: tuple[list[int], float] | None,
    progress: Callable[[int, int], None],
    common: dict[str, Any],
) -> list[Image.Image] | None:
    """The first pass and the hires pass (or the inpainting pass) of one batch: pictures, or None when skipped."""
    request, hires = plan.request, plan.hires
    if request.inpaint is not None and request.init_image is not None:
        return inpaint_pass(model.runner, request, plan.width, plan.height, seeds, progress, common)
    pictures = model.runner.run(
        seeds=seeds,
        steps=request.steps,
        width=plan.width,
        height=plan.height,
        init_image=request.init_image,
        denoising_strength=request.denoising_strength,
        progress=progress,
        noise_multiplier=request.noise_multiplier,
        output="latent" if hires and hires.upscaler in LATENT_UPSCALERS else "pil",
        variation=variation,
        **common,
    )
    if hires is not None and pictures is not None:
        if hires.sampler is not None:
            common = common | dict(sampler=hires.sampler[0], schedule=hires.sampler[1])
        pictures = hires_pass(
            model.runner,
            pictures,
            seeds,
            upscaler=hires.upscaler,
            models_root=hires.models_root,
            width=hires.width,
            height=hires.height,
            steps=hires.steps,
            denoising_strength=hires.denoising_strength,
            first_steps=request.steps,
            progress=progress,
            **common,
        )
    if pictures is None:
        return None
    assert isinstance(pictures, list)
    if plan.demo is not None:
        pictures = [p.resize(plan.demo.final, Image.Resampling.LANCZOS) for p in pictures]
    return pictures


def infotext_for(
    plan: GenerationPlan, model: LoadedModel, seed: int, subseed: int | None, ti_hashes: str = ""
) -> str:
    """A1111's parameters text of one picture of the plan (``ti_hashes``: the job's ``TI hashes`` value)."""
    request, hires = plan.request, plan.hires
    params: dict[str, Any] = {
        "Steps": request.steps,
        "Sampler": plan.sampler,
        "Schedule type": plan.schedule,
        "CFG scale": request.cfg_scale,
        "Seed": seed,
        "Size": "{}x{}".format(*(plan.demo.asked if plan.demo else (plan.width, plan.height))),
        "Model hash": model.short_hash,
        "Model": model.name,
        "Variation seed": subseed,
        "Variation seed strength": request.variation_strength if subseed is not None else None,
        "Denoising strength": request.denoising_strength if request.init_image is not None else None,
        "Clip skip": request.clip_skip if request.clip_skip > 1 else None,
        "Tiling": True if request.tiling else None,
        "Noise multiplier": request.noise_multiplier
        if request.init_image is not None and request.noise_multiplier != 1
        else None,
        "Demo drawn at": "{}x{}".format(*plan.demo.drawn) if plan.demo else None,
        "RNG": "CPU",
    }
    if request.inpaint is not None and request.init_image is not None:
        params |= inpaint_infotext(request.inpaint)
    if hires is not None:
        resized = hires.request.resize_x or hires.request.resize_y
        params |= {
            "Denoising strength": hires.denoising_strength,
            "Hires upscale": None if resized else hires.request.scale,
            "Hires resize": f"{hires.request.resize_x}x{hires.request.resize_y}" if resized else None,
            "Hires steps": hires.request.steps or None,
            "Hires upscaler": hires.upscaler,
            "Hires sampler": hires.sampler[0] if hires.sampler else None,
            "Hires schedule type": hires.sampler[1] if hires.sampler else None,
        }
    params |= {"Lora hashes": plan.lora_hashes or None, "TI hashes": ti_hashes or None}
    params |= {"Version": f"loradeck {__version__}"}
    return format_infotext(plan.recorded_prompt, request.negative_prompt, params)


def preview_of(latents: torch.Tensor | None, model: LoadedModel | None) -> Image.Image | None:
    """A quick picture of the image being sampled now (first of its batch), or None when idle."""
    from loradeck.engine.preview import preview_image

    if latents is None or model is None:
        return None
    return preview_image(latents[0], sdxl=model.runner.c.is_sdxl)
