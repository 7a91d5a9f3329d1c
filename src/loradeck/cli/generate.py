"""`loradeck generate`: pictures from a prompt, with `<lora:name:weight>` tags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loradeck.cli.common import EmbeddingsDir, LoraDir, ModelsDir, console, make_studio, plain, warn


def generate(
    prompt: Annotated[str, typer.Argument(help='Prompt; LoRAs with A1111 tags, e.g. "a cat <lora:style:0.8>".')] = "",
    negative: Annotated[str, typer.Option("--negative", "-n", help="Negative prompt.")] = "",
    seed: Annotated[int, typer.Option(help="Seed; -1 = random. Image i of the job uses seed+i.")] = -1,
    steps: Annotated[int, typer.Option(help="Sampling steps.")] = 20,
    cfg: Annotated[float, typer.Option("--cfg", help="CFG scale.")] = 7.0,
    sampler: Annotated[
        str, typer.Option(help='A1111 sampler name, e.g. "Euler a", "DPM++ 2M", "DPM++ 2M Karras".')
    ] = "Euler a",
    scheduler: Annotated[str, typer.Option(help="Schedule type: Automatic, Karras, Exponential, …")] = "Automatic",
    width: Annotated[
        int | None, typer.Option(help="Width in pixels (multiple of 8); default: the model's size.")
    ] = None,
    height: Annotated[int | None, typer.Option(help="Height in pixels (multiple of 8).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 1,
    batch_count: Annotated[int, typer.Option(help="Number of batches.")] = 1,
    clip_skip: Annotated[int, typer.Option(help="Clip skip (1 = last layer).")] = 1,
    checkpoint: Annotated[
        str | None, typer.Option(help="Checkpoint name or path; default: the embedded demo model.")
    ] = None,
    init_image: Annotated[Path | None, typer.Option(help="img2img: the starting picture.")] = None,
    denoise: Annotated[float, typer.Option(help="img2img denoising strength.")] = 0.75,
    mask: Annotated[
        Path | None, typer.Option(help="Inpainting (with --init-image): white = redraw, black = keep.")
    ] = None,
    mask_blur: Annotated[int, typer.Option(help="Inpainting: mask blur in pixels.")] = 4,
    inpaint_fill: Annotated[
        str, typer.Option(help='Inpainting: masked content, "fill", "original", "latent noise" or "latent nothing".')
    ] = "original",
    only_masked: Annotated[
        bool, typer.Option("--only-masked", help="Inpainting: draw only the masked area, at full size.")
    ] = False,
    only_masked_padding: Annotated[int, typer.Option(help="Inpainting: pixels around the masked area.")] = 32,
    invert_mask: Annotated[bool, typer.Option("--invert-mask", help="Inpainting: redraw what is black.")] = False,
    variation_seed: Annotated[int, typer.Option(help="Variation seed (A1111's subseed; -1 = random).")] = -1,
    variation_strength: Annotated[
        float, typer.Option(help="How far toward the variation seed's noise (0 = none, 1 = all).")
    ] = 0.0,
    style: Annotated[
        list[str] | None, typer.Option("--style", help="A1111 style from <home>/styles.csv (repeatable).")
    ] = None,
    hires: Annotated[bool, typer.Option("--hires", help="Hires fix: redraw at a larger size (txt2img).")] = False,
    hr_scale: Annotated[float, typer.Option(help="Hires fix: upscale factor.")] = 2.0,
    hr_upscaler: Annotated[
        str, typer.Option(help='Hires fix upscaler: "Latent" (and its variants), "Lanczos", "Nearest".')
    ] = "Latent",
    hr_steps: Annotated[int, typer.Option(help="Hires fix steps (0 = same as --steps).")] = 0,
    hr_denoise: Annotated[float, typer.Option(help="Hires fix denoising strength.")] = 0.7,
    hr_sampler: Annotated[str | None, typer.Option(help="Hires fix sampler (default: --sampler).")] = None,
    from_png: Annotated[
        Path | None, typer.Option("--from-png", help="Re-render the settings stored in a PNG's infotext.")
    ] = None,
    normalize_lora_weights: Annotated[bool, typer.Option(help="Rescale LoRA weights so they sum to 1.")] = False,
    add_trigger_words: Annotated[bool, typer.Option(help="Append the trigger words of active LoRAs.")] = False,
    out: Annotated[Path | None, typer.Option(help="Outputs folder (default <home>/outputs).")] = None,
    models_dir: ModelsDir = None,
    lora_dir: LoraDir = None,
    embeddings_dir: EmbeddingsDir = None,
    tokenizer: Annotated[Path | None, typer.Option(help="CLIP tokenizer folder for single-file checkpoints.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cuda, mps or cpu.")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto, fp32, fp16 or bf16.")] = None,
    attention_slicing: Annotated[bool, typer.Option(help="Less GPU memory, a little slower.")] = False,
    cpu_offload: Annotated[bool, typer.Option(help="Keep idle model parts in RAM (small GPUs).")] = False,
) -> None:
    """Generate pictures and save them as PNGs with A1111 infotext."""
    from PIL import Image

    from loradeck.vocab import GenerationRequest, HiresFix

    studio = make_studio(
        models_dir=models_dir,
        lora_dir=lora_dir,
        embeddings_dir=embeddings_dir,
        outputs_dir=out,
        device=device,
        dtype=dtype,
        tokenizer_dir=tokenizer,
        attention_slicing=attention_slicing or None,
        cpu_offload=cpu_offload or None,
    )
    if from_png is not None:
        from loradeck.prompt.pnginfo import request_from_png

        request = request_from_png(from_png)
        for note in _embedding_notes(studio, from_png):
            warn(note)
    else:
        if not prompt:
            raise typer.BadParameter("give a PROMPT or --from-png FILE")
        request = GenerationRequest(
            prompt=prompt,
            negative_prompt=negative,
            seed=seed,
            variation_seed=variation_seed,
            variation_strength=variation_strength,
            steps=steps,
            cfg_scale=cfg,
            sampler=sampler,
            scheduler=scheduler,
            width=width,
            height=height,
            batch_size=batch_size,
            batch_count=batch_count,
            clip_skip=clip_skip,
            checkpoint=checkpoint,
            init_image=Image.open(init_image) if init_image else None,
            denoising_strength=denoise,
            normalize_lora_weights=normalize_lora_weights,
            add_trigger_words=add_trigger_words,
            hires=HiresFix(hr_scale, hr_upscaler, hr_steps, hr_denoise, sampler=hr_sampler) if hires else None,
            styles=list(style or []),
        )
    if mask is not None:
        request.inpaint = _inpaint(mask, mask_blur, inpaint_fill, only_masked, only_masked_padding, invert_mask)
        if request.init_image is None:
            raise typer.BadParameter("--mask needs --init-image (the picture to inpaint)")
    result = _run_with_progress(studio, request)
    print_result_notes(result)
    for image in result.images:
        print(image.path)
    if result.interrupted:
        console.print("[yellow]interrupted[/]")


def print_result_notes(result) -> None:
    """Warnings, then one coverage line per LoRA; a LoRA that changed nothing is an error line (stderr). Text from
    files and prompts is printed as plain text, never as markup."""
    from loradeck.lora.coverage import error_lines

    errors = error_lines(result.lora_coverage)
    for warning in result.warnings:
        if warning.rstrip(".") not in {e.rstrip(".") for e in errors}:
            warn(warning)
    for c in result.lora_coverage:
        if c.error:
            console.print(plain("error: ", "bold red") + plain(c.line()), soft_wrap=True, highlight=False)
        else:
            console.print(plain(c.line()), highlight=False)


def _embedding_notes(studio, png: Path) -> list[str]:
    """The picture's ``TI hashes`` checked against the embeddings here: missing or different files, one line each."""
    from loradeck.prompt.infotext import infotext_settings
    from loradeck.prompt.pnginfo import read_infotext

    hashes = infotext_settings(read_infotext(png) or "").ti_hashes
    return studio.embedding_hash_notes(hashes) if hashes else []


def _inpaint(path: Path, blur: int, fill: str, only_masked: bool, padding: int, invert: bool):
    from PIL import Image

    from loradeck.services.catalog import INPAINT_FILLS as FILLS
    from loradeck.vocab import Inpaint

    modes = {name: number for number, name in FILLS.items()}
    if fill not in modes:
        raise typer.BadParameter(f"--inpaint-fill must be one of {', '.join(modes)}")
    return Inpaint(Image.open(path), blur, modes[fill], only_masked, padding, invert)


def _run_with_progress(studio, request):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    total_images = request.batch_size * request.batch_count
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("loading model", total=None)

        def on_progress(p) -> None:  # a loradeck.vocab.Progress
            if p.phase != "sample":
                return
            first = p.first_image
            last = min(first + request.batch_size, total_images)
            label = f"image {first + 1}" if last == first + 1 else f"images {first + 1}-{last}"
            bar.update(task, description=f"{label} of {total_images}", completed=p.step, total=p.total)

        return studio.generate(request, on_progress=on_progress)
