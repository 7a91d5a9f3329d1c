"""X/Y/Z plots over HTTP: A1111's ``script_name: "x/y/z plot"`` on txt2img (its ``script_args`` layout, A1111 1.10's
axis indices for the axis types loradeck runs) and our own ``POST /loradeck/v1/grid`` (axes as ``KIND=V1,V2``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from loradeck.errors import InvalidRequest
from loradeck.prompt.grid_axes import Axis, make_axis, parse_axis, split_values
from loradeck.server.images import encode_png
from loradeck.server.models import GenerationResponse, Txt2ImgRequest
from loradeck.server.service import ServerState
from loradeck.services.grid import GridRequest, GridResult
from loradeck.vocab import GenerationRequest

router = APIRouter(prefix="/loradeck/v1", tags=["grid"])
SCRIPT = "x/y/z plot"

# A1111 1.10's X/Y/Z axis list as the txt2img tab offers it (script_args carry an index into it) → our axis kinds;
# None: a type loradeck does not run (refused with 422 naming it).
A1111_AXES: list[tuple[str, str | None]] = [
    ("Nothing", "nothing"), ("Seed", "seed"), ("Var. seed", "var-seed"), ("Var. strength", "var-strength"),
    ("Steps", "steps"), ("Hires steps", "hires-steps"), ("CFG Scale", "cfg"), ("Prompt S/R", "sr"),
    ("Prompt order", None), ("Sampler", "sampler"), ("Hires sampler", "hires-sampler"),
    ("Checkpoint name", "checkpoint"), ("Negative Guidance minimum sigma", None), ("Sigma Churn", None),
    ("Sigma min", None), ("Sigma max", None), ("Sigma noise", None), ("Schedule type", "schedule"),
    ("Schedule min sigma", None), ("Schedule max sigma", None), ("Schedule rho", None), ("Skip Early CFG", None),
    ("Beta schedule alpha", None), ("Beta schedule beta", None), ("Eta", None), ("Clip skip", "clip-skip"),
    ("Denoising", "denoise"), ("Initial noise multiplier", None), ("Extra noise", None),
    ("Hires upscaler", "hires-upscaler"), ("VAE", None), ("Styles", "styles"), ("UniPC Order", None),
    ("Face restore", None), ("Token merging ratio", None), ("Token merging ratio high-res", None),
    ("Always discard next-to-last sigma", None), ("SGM noise multiplier", None), ("Refiner checkpoint", None),
    ("Refiner switch at", None), ("RNG source", None), ("FP8 mode", None), ("Size", "size"),
]  # fmt: skip


def is_xyz(body: Txt2ImgRequest) -> bool:
    return (body.script_name or "").strip().lower() == SCRIPT


def _a1111_axis(kind_ref: Any, text: Any, dropdown: Any) -> Axis | None:
    """One axis from A1111's (type index or label, values text, values dropdown)."""
    if isinstance(kind_ref, str) and not kind_ref.strip().lstrip("-").isdigit():
        found = [i for i, (label, _) in enumerate(A1111_AXES) if label.lower() == kind_ref.strip().lower()]
        if not found:
            raise InvalidRequest(f"X/Y/Z plot axis type {kind_ref!r} is not one A1111 1.10 has.")
        index = found[0]
    else:
        try:
            index = int(kind_ref)
        except (TypeError, ValueError):
            raise InvalidRequest(f"X/Y/Z plot axis type {kind_ref!r} is neither an index nor a label.") from None
    if not 0 <= index < len(A1111_AXES):
        raise InvalidRequest(f"X/Y/Z plot axis type {index} is out of A1111's range 0–{len(A1111_AXES) - 1}.")
    label, kind = A1111_AXES[index]
    if kind is None:
        raise InvalidRequest(f"X/Y/Z plot axis type {label!r} is not supported by loradeck.")
    if kind == "nothing":
        return None
    values = [str(v) for v in dropdown] if isinstance(dropdown, list) and dropdown else split_values(str(text or ""))
    if kind == "sr":  # A1111's S/R: one term per value, "|" is just a character
        if not values:
            raise InvalidRequest("Prompt S/R needs the text to search for as its first value.")
        return Axis("sr", "", tuple((v,) for v in values), "Prompt S/R")
    return make_axis(kind, "", values)


def grid_from_script_args(base: GenerationRequest, args: list[Any]) -> tuple[GridRequest, bool]:
    """(the grid, include_lone_images) from A1111's script_args: [x_type, x_values, x_values_dropdown, y_…, z_…,
    draw_legend, include_lone_images, include_sub_grids, no_fixed_seeds, …]."""
    padded = list(args) + [None] * max(0, 11 - len(args))
    axes = [_a1111_axis(padded[i] or 0, padded[i + 1], padded[i + 2]) for i in (0, 3, 6)]
    if not any(axes):
        raise InvalidRequest("The X/Y/Z plot has no axis: script_args[0], [3] or [6] must name one.")
    return GridRequest(base, *axes), bool(padded[10])


async def run_a1111_grid(state: ServerState, body: Txt2ImgRequest, base: GenerationRequest) -> GenerationResponse:
    """txt2img with the X/Y/Z plot script: images = [grid, cells… when include_lone_images], as A1111 answers."""
    request, lone = grid_from_script_args(base, body.script_args)
    job = await anyio.to_thread.run_sync(state.studio.submit_grid, request)  # every cell checked: 422 now
    result: GridResult = await asyncio.wrap_future(job.future)

    def build() -> GenerationResponse:
        pictures = [result.grid] + (result.cell_images if lone else [])
        infotexts = [result.infotext] + ([c.images[0].infotext for c in result.cells if c.images] if lone else [])
        first = next((c for c in result.cells if c.images), None)
        info = {
            "prompt": base.prompt,
            "all_prompts": [c.prompt for c in result.cells],
            "negative_prompt": base.negative_prompt,
            "seed": first.seeds[0] if first else base.seed,
            "all_seeds": [c.seeds[0] if c.seeds else None for c in result.cells],
            "infotexts": infotexts,
            "sd_model_name": first.model_name if first else None,
            "sd_model_hash": first.model_hash if first else None,
            "warnings": result.warnings,
            "interrupted": result.interrupted,
            "lora_merges": result.merges,
            "stack_switches": result.stack_switches,
        }
        images = [encode_png(p, t) for p, t in zip(pictures, infotexts, strict=False)] if body.send_images else []
        return GenerationResponse(images=images, parameters=body.model_dump(), info=json.dumps(info))

    return await anyio.to_thread.run_sync(build)


class GridBody(BaseModel):
    prompt: str
    negative_prompt: str = ""
    x: str | None = Field(None, description="KIND[:TARGET]=V1,V2,… e.g. lora:stripy=0,0.5,1")
    y: str | None = None
    z: str | None = None
    seed: int = -1
    steps: int = 20
    cfg_scale: float = 7.0
    sampler_name: str = "Euler a"
    scheduler: str = "Automatic"
    width: int | None = None
    height: int | None = None
    checkpoint: str | None = None


@router.post("/grid", status_code=202)
def grid(body: GridBody, request: Request) -> dict[str, Any]:
    """Queue an X/Y/Z plot; poll ``/loradeck/v1/jobs/{id}``: its ``detail`` names the grid and cell files."""
    state: ServerState = request.app.state.loradeck
    base = GenerationRequest(
        prompt=body.prompt, negative_prompt=body.negative_prompt, seed=body.seed, steps=body.steps,
        cfg_scale=body.cfg_scale, sampler=body.sampler_name, scheduler=body.scheduler, width=body.width,
        height=body.height, checkpoint=body.checkpoint,
    )  # fmt: skip
    axes = [parse_axis(a) if a else None for a in (body.x, body.y, body.z)]
    if not any(axes):
        raise InvalidRequest("Give at least one axis: x, y or z.")
    job = state.studio.submit_grid(GridRequest(base, *axes), describe=GridResult.to_dict)
    return {"job_id": job.id, "status_url": f"/loradeck/v1/jobs/{job.id}"}
