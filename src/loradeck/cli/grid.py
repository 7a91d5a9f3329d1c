"""`loradeck grid`: an X/Y/Z plot over LoRA weights, LoRA swaps, seeds, samplers, prompt S/R, checkpoints, sizes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from loradeck.cli.common import LoraDir, ModelsDir, console, make_studio, plain, warn

AXIS_HELP = (
    "KIND[:TARGET]=V1,V2,… — seed, steps, cfg, sampler, schedule, checkpoint, size (WxH), clip-skip, var-seed, "
    "var-strength, styles, sr (Prompt S/R; a|b replaces two terms at once), lora:NAME (weight; lora:NAME:te / :unet), "
    "swap:NAME (other LoRAs). Ranges: 1-5, 1-10 (+3), 0-1 [5]."
)


def grid(
    prompt: Annotated[str, typer.Argument(help="Prompt, with <lora:…> tags as in generate.")],
    x: Annotated[str | None, typer.Option("--x", help=f"X axis: {AXIS_HELP}")] = None,
    y: Annotated[str | None, typer.Option("--y", help="Y axis (same forms).")] = None,
    z: Annotated[str | None, typer.Option("--z", help="Z axis: one X/Y grid per value, side by side.")] = None,
    negative: Annotated[str, typer.Option("--negative", "-n", help="Negative prompt.")] = "",
    seed: Annotated[int, typer.Option(help="Seed of every cell unless an axis varies it; -1 = one random seed.")] = -1,
    steps: Annotated[int, typer.Option(help="Sampling steps.")] = 20,
    cfg: Annotated[float, typer.Option("--cfg", help="CFG scale.")] = 7.0,
    sampler: Annotated[str, typer.Option(help="A1111 sampler name.")] = "Euler a",
    scheduler: Annotated[str, typer.Option(help="Schedule type.")] = "Automatic",
    width: Annotated[int | None, typer.Option(help="Width (default: the model's size).")] = None,
    height: Annotated[int | None, typer.Option(help="Height.")] = None,
    checkpoint: Annotated[str | None, typer.Option(help="Checkpoint (default: the embedded demo model).")] = None,
    out: Annotated[Path | None, typer.Option(help="Outputs folder (default <home>/outputs).")] = None,
    models_dir: ModelsDir = None,
    lora_dir: LoraDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Draw an X/Y/Z plot: every cell is its own PNG (with its infotext), plus the labelled grid PNG."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from loradeck.prompt.grid_axes import parse_axis
    from loradeck.services.grid import GridRequest
    from loradeck.vocab import GenerationRequest

    if not (x or y or z):
        raise typer.BadParameter("give at least one axis: --x, --y or --z")
    base = GenerationRequest(
        prompt=prompt, negative_prompt=negative, seed=seed, steps=steps, cfg_scale=cfg, sampler=sampler,
        scheduler=scheduler, width=width, height=height, checkpoint=checkpoint,
    )  # fmt: skip
    request = GridRequest(base, *(parse_axis(a) if a else None for a in (x, y, z)))
    studio = make_studio(models_dir=models_dir, lora_dir=lora_dir, outputs_dir=out)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task("planning", total=None)

        def on_progress(p) -> None:
            bar.update(task, description=f"cell {p.batch + 1} of {p.batches}", completed=p.batch, total=p.batches)

        result = studio.grid(request, on_progress=on_progress)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    for warning in result.warnings:
        warn(warning)
    console.print(
        f"{len(result.cells)} cells, {result.merges} LoRA merge(s), {result.stack_switches} stack switch(es), "
        f"{result.checkpoint_loads} checkpoint load(s)"
    )
    for cell in result.cells:
        if cell.images and cell.images[0].path:
            console.print(plain(cell.images[0].path, "dim"))
    print(result.grid_path)
