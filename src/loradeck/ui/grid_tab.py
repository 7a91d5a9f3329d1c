"""The Grid tab: an X/Y/Z plot over LoRA weights, swaps, seeds, samplers, prompt S/R… as one job on the studio's
queue (it waits its turn behind other jobs), with progress per cell and the labelled grid when it is done."""

from __future__ import annotations

import time
from concurrent import futures

import gradio as gr

from loradeck.errors import LoradeckError
from loradeck.prompt.grid_axes import parse_axis
from loradeck.services.grid import GridRequest, GridResult
from loradeck.services.jobs import Job
from loradeck.services.studio import Studio
from loradeck.ui import status
from loradeck.ui.generation import progress_html
from loradeck.vocab import GenerationRequest

POLL_S = 0.25
AXIS_HINT = "KIND=V1,V2,… e.g. lora:stripy=0,0.5,1 · seed=1-4 · sampler=Euler a,DPM++ 2M · sr=red|circle,blue|square"


def grid_request(
    prompt: str, negative: str, x: str, y: str, z: str, steps: float, cfg: float, seed: float
) -> GridRequest:
    """The form as a GridRequest (InvalidRequest with one sentence when an axis does not parse)."""
    axes = [parse_axis(a) if a and a.strip() else None for a in (x, y, z)]
    if not any(axes):
        raise LoradeckError("Give at least one axis (X, Y or Z).")
    base = GenerationRequest(prompt, negative_prompt=negative, steps=int(steps), cfg_scale=float(cfg), seed=int(seed))
    return GridRequest(base, *axes)


def summary(result: GridResult) -> list[str]:
    lines = [
        f"{len(result.cells)} cells · {result.merges} LoRA merge(s) · {result.stack_switches} stack switch(es) · "
        f"{result.checkpoint_loads} checkpoint load(s)" + (" · interrupted" if result.interrupted else ""),
    ]
    if result.grid_path:
        lines.append(f"Grid: {result.grid_path}")
    return lines + list(result.warnings)


def build_grid_tab(studio: Studio) -> None:
    limits = studio.settings.limits
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=300):
            prompt = gr.Textbox(
                label="Prompt", lines=2, elem_id="ld-grid-prompt", value="a red circle on a blue background, stripy"
            )
            negative = gr.Textbox(label="Negative prompt", lines=1, elem_id="ld-grid-negative")
            x = gr.Textbox(label="X axis", placeholder=AXIS_HINT, value="lora:stripy=0,0.5,1", elem_id="ld-grid-x")
            y = gr.Textbox(label="Y axis", placeholder=AXIS_HINT, value="seed=1,2", elem_id="ld-grid-y")
            z = gr.Textbox(label="Z axis (one X/Y grid per value)", placeholder=AXIS_HINT, elem_id="ld-grid-z")
            with gr.Row():
                steps = gr.Slider(1, limits.max_steps, 20, step=1, label="Steps", elem_id="ld-grid-steps")
                cfg = gr.Slider(1, 30, 7, step=0.5, label="CFG scale")
                seed = gr.Number(-1, label="Seed (-1: one random seed for all cells)", precision=0)
            with gr.Row():
                run = gr.Button("Draw grid", variant="primary", elem_id="ld-grid-run")
                stop = gr.Button("Interrupt", elem_id="ld-grid-stop")
        with gr.Column(scale=4, min_width=300):
            bar = gr.HTML(progress_html(0, "Idle", state="idle"), elem_id="ld-grid-progress")
            picture = gr.Image(label="Grid", type="pil", interactive=False, elem_id="ld-grid-image")
            box = gr.HTML(elem_id="ld-grid-status")
    running: dict[str, Job] = {}

    def draw(prompt_, negative_, x_, y_, z_, steps_, cfg_, seed_, request: gr.Request):
        try:
            job = studio.submit_grid(grid_request(prompt_, negative_, x_, y_, z_, steps_, cfg_, seed_))
        except LoradeckError as exc:
            yield {box: status.error(str(exc)), bar: progress_html(0, "Not started", state="error")}
            return
        running[request.session_hash or "default"] = job
        started = time.monotonic()
        while not futures.wait([job.future], timeout=POLL_S).done:
            p = job.progress
            text = "Waiting in the queue…" if job.state == "queued" else f"cell {p.batch + 1} of {p.batches}"
            yield {bar: progress_html(job.fraction, f"{text} · {time.monotonic() - started:.0f} s")}
        try:
            result: GridResult = job.future.result()
        except Exception as exc:  # noqa: BLE001 - the page shows a sentence, never a blank error
            sentence = str(exc) if isinstance(exc, LoradeckError) else f"The grid failed: {type(exc).__name__}: {exc}"
            yield {box: status.error(sentence), bar: progress_html(1, "Failed", state="error")}
            return
        kind = "warning" if result.warnings or result.interrupted else "ok"
        yield {
            picture: result.grid,
            box: status.status_html(kind, summary(result)),
            bar: progress_html(1, f"Done in {time.monotonic() - started:.1f} s", state="done"),
        }

    def interrupt(request: gr.Request) -> None:
        job = running.get(request.session_hash or "default")
        if job is not None:
            studio.cancel(job.id)

    run.click(
        draw,
        [prompt, negative, x, y, z, steps, cfg, seed],
        [bar, picture, box],
        concurrency_limit=None,
        show_progress="hidden",
    )
    stop.click(interrupt, None, None)
