"""``/sdapi/v1`` routes about models: sd-models, samplers, schedulers, loras, refresh-*, png-info, memory (A1111
shapes). Options live in ``a1111_options``, the other listings in ``a1111_lists``."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, Request

from loradeck.server.images import decode_image
from loradeck.server.models import (
    LoraItem,
    PngInfoRequest,
    PngInfoResponse,
    PromptStyleItem,
    SamplerItem,
    SchedulerItem,
    SDModelItem,
)
from loradeck.server.service import DEMO, ServerState

router = APIRouter(prefix="/sdapi/v1", tags=["A1111"])
_RHO = {"Karras": 7.0, "Polyexponential": 1.0}


def state_of(request: Request) -> ServerState:
    return request.app.state.loradeck


# options: server/a1111_options.py


# ---------------------------------------------------------------------------------------------------- models
@router.get("/sd-models", response_model=list[SDModelItem])
def sd_models(request: Request) -> list[SDModelItem]:
    from loradeck.demo.paths import demo_model_dir, demo_model_hash

    items = [SDModelItem(title=DEMO, model_name=DEMO, hash=demo_model_hash(), filename=str(demo_model_dir()))]
    for c in state_of(request).studio.library.checkpoints():
        items.append(
            SDModelItem(title=c.title, model_name=c.model_name, hash=c.autov2, sha256=c.sha256, filename=str(c.path))
        )
    return items


@router.post("/refresh-checkpoints")
def refresh_checkpoints(request: Request) -> None:
    state_of(request).studio.library.refresh()


@router.get("/loras", response_model=list[LoraItem])
def loras(request: Request) -> list[LoraItem]:
    return [
        LoraItem(name=e.name, alias=e.alias, path=str(e.path), metadata=e.metadata)
        for e in state_of(request).studio.loras()
    ]


@router.post("/refresh-loras")
def refresh_loras(request: Request) -> None:
    state_of(request).studio.library.refresh()


# ---------------------------------------------------------------------------------------------------- samplers
@router.get("/samplers", response_model=list[SamplerItem])
def samplers() -> list[SamplerItem]:
    """The A1111 samplers loradeck runs, in A1111's order, with their aliases and default schedule."""
    from loradeck.services.catalog import samplers

    return [
        SamplerItem(
            name=s.label,
            aliases=list(s.aliases),
            options={"scheduler": s.default_schedule} if s.default_schedule else {},
        )
        for s in samplers()
    ]


@router.get("/schedulers", response_model=list[SchedulerItem])
def schedulers() -> list[SchedulerItem]:
    from loradeck.services.catalog import schedules

    return [
        SchedulerItem(name=s.name, label=s.label, aliases=list(s.aliases) or None, default_rho=_RHO.get(s.label, -1))
        for s in schedules()
    ]


@router.get("/prompt-styles", response_model=list[PromptStyleItem])
def prompt_styles(request: Request) -> list[PromptStyleItem]:
    """The styles of ``<home>/styles.csv`` (A1111's list; ``styles`` in a request names them)."""
    from loradeck.prompt.styles import read_styles

    styles = read_styles(state_of(request).studio.settings.styles_path)
    return [PromptStyleItem(name=s.name, prompt=s.prompt, negative_prompt=s.negative_prompt) for s in styles.values()]


@router.get("/scripts")
def scripts() -> dict[str, list[str]]:
    """The A1111 scripts loradeck runs (the X/Y/Z plot, on txt2img); clients (webuiapi) probe this list."""
    return {"txt2img": ["x/y/z plot"], "img2img": []}


# ---------------------------------------------------------------------------------------------------- png-info
@router.post("/png-info", response_model=PngInfoResponse)
def png_info(body: PngInfoRequest, request: Request) -> PngInfoResponse:
    """The infotext of a picture, its other text chunks, and the parsed fields (Lora hashes pasted back)."""
    from loradeck.prompt.infotext import parse_infotext, parse_lora_hashes
    from loradeck.prompt.pnginfo import infotext_of_image
    from loradeck.prompt.tags import rename_by_hashes

    image = decode_image(body.image)
    items = {k: v for k, v in image.info.items() if isinstance(v, str) and k != "parameters"}
    text = infotext_of_image(image)
    if not text:
        return PngInfoResponse(info="", items=items, parameters={})
    params = parse_infotext(text)
    if params.get("Lora hashes"):
        library = state_of(request).studio.library

        def name_for_hash(short: str) -> str | None:
            entry = library.by_hash(short)
            return getattr(entry, "prompt_name", None)

        params["Prompt"] = rename_by_hashes(params["Prompt"], parse_lora_hashes(params["Lora hashes"]), name_for_hash)
    return PngInfoResponse(info=text, items=items, parameters=params)


# ---------------------------------------------------------------------------------------------------- memory
@router.get("/memory")
def memory() -> dict[str, Any]:
    import torch

    page = os.sysconf("SC_PAGE_SIZE")
    total, free = page * os.sysconf("SC_PHYS_PAGES"), page * os.sysconf("SC_AVPHYS_PAGES")
    ram = {"free": free, "used": total - free, "total": total}
    if not torch.cuda.is_available():
        return {"ram": ram, "cuda": {"error": "CUDA is not available"}}
    free_c, total_c = torch.cuda.mem_get_info()
    stats = torch.cuda.memory_stats()

    def pair(name: str) -> dict[str, int]:
        return {"current": stats.get(f"{name}.all.current", 0), "peak": stats.get(f"{name}.all.peak", 0)}

    cuda = {
        "system": {"free": free_c, "used": total_c - free_c, "total": total_c},
        "active": pair("active_bytes"),
        "allocated": pair("allocated_bytes"),
        "reserved": pair("reserved_bytes"),
        "inactive": pair("inactive_split_bytes"),
        "events": {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)},
    }
    return {"ram": ram, "cuda": cuda}
