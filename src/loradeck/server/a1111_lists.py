"""The rest of A1111's ``/sdapi/v1`` listings and no-op refreshes, with what loradeck really has.

Lists of things loradeck does not have (VAEs apart from the checkpoint's own, hypernetworks, face restorers,
scripts, extensions) are empty — never a made-up entry — so clients that build menus
from them show nothing to pick instead of failing on a 404. Upscalers are the real ones: A1111's "None", "Lanczos"
and "Nearest" (PIL), plus every model file in A1111's upscaler folders under ``<home>/models``. Embeddings are the
real ones too (the embeddings folders, ``loaded`` = the current checkpoint's family, ``skipped`` = the others).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from loradeck.errors import InvalidRequest
from loradeck.server.service import DEMO, ServerState

router = APIRouter(prefix="/sdapi/v1", tags=["A1111"])


class UpscalerItem(BaseModel):
    name: str
    model_name: str | None = None
    model_path: str | None = None
    model_url: str | None = None
    scale: float | None = None


class LatentUpscalerModeItem(BaseModel):
    name: str


class RealesrganItem(BaseModel):
    name: str
    path: str | None = None
    scale: int | None = None


class EmbeddingsResponse(BaseModel):
    loaded: dict[str, Any]
    skipped: dict[str, Any]


def state_of(request: Request) -> ServerState:
    return request.app.state.loradeck


def models_root(request: Request) -> Path:
    return Path(state_of(request).studio.settings.home) / "models"


# ---------------------------------------------------------------------------------------------------- upscalers
@router.get("/upscalers", response_model=list[UpscalerItem])
def upscalers(request: Request) -> list[UpscalerItem]:
    """A1111's picture upscalers: None, Lanczos, Nearest, then the model files (name = file stem, scale = the
    file name's ``4x``/``x4`` when it has one, as A1111 guesses it before loading)."""
    from loradeck.services.catalog import model_upscalers as find_model_upscalers

    items = [UpscalerItem(name=n, scale=4 if n != "None" else 1) for n in ("None", "Lanczos", "Nearest")]
    for up in find_model_upscalers(models_root(request)).values():
        items.append(
            UpscalerItem(name=up.name, model_name=up.folder, model_path=str(up.path), scale=_scale_from_name(up.name))
        )
    return items


def _scale_from_name(name: str) -> float | None:
    import re

    match = re.search(r"(?:^|[^0-9])([1-8])x|x([1-8])(?:[^0-9]|$)", name, re.IGNORECASE)
    return float(match.group(1) or match.group(2)) if match else None


@router.get("/latent-upscale-modes", response_model=list[LatentUpscalerModeItem])
def latent_upscale_modes() -> list[LatentUpscalerModeItem]:
    from loradeck.services.catalog import latent_upscalers

    return [LatentUpscalerModeItem(name=n) for n in latent_upscalers()]


@router.get("/realesrgan-models", response_model=list[RealesrganItem])
def realesrgan_models(request: Request) -> list[RealesrganItem]:
    """The model files in ``<home>/models/RealESRGAN`` (A1111 lists its RealESRGAN upscalers here)."""
    from loradeck.services.catalog import model_upscalers as find_model_upscalers

    found = find_model_upscalers(models_root(request)).values()
    return [
        RealesrganItem(name=u.name, path=str(u.path), scale=int(s) if (s := _scale_from_name(u.name)) else None)
        for u in found
        if u.folder == "RealESRGAN"
    ]


# ---------------------------------------------------------------------------------------------------- none here
@router.get("/sd-vae")
def sd_vae() -> list[dict[str, str]]:
    """Empty: loradeck always decodes with the checkpoint's own VAE (separate VAE files are not loaded)."""
    return []


@router.get("/hypernetworks")
def hypernetworks() -> list[dict[str, str]]:
    return []


@router.get("/face-restorers")
def face_restorers() -> list[dict[str, str]]:
    """Empty: loradeck has no face restorer (``restore_faces`` is answered with a warning)."""
    return []


@router.get("/embeddings", response_model=EmbeddingsResponse)
def embeddings(request: Request) -> EmbeddingsResponse:
    """A1111's shape: ``{loaded: {name: {step, sd_checkpoint, sd_checkpoint_name, shape, vectors}}, skipped: {…}}``;
    loaded = the embeddings of the current checkpoint's family (a rescan picks up new files, as A1111 does)."""
    listing = state_of(request).studio.embedding_listing()
    return EmbeddingsResponse(loaded=listing["loaded"], skipped=listing["skipped"])


@router.get("/script-info")
def script_info() -> list[dict[str, Any]]:
    return []


@router.get("/extensions")
def extensions() -> list[dict[str, Any]]:
    return []


@router.post("/interrogate")
def interrogate(body: dict[str, Any]) -> None:
    """No captioning model (CLIP interrogator, DeepBooru) in loradeck: a 422 that says so."""
    model = body.get("model", "clip")
    raise InvalidRequest(f"Interrogate ({model}) is not available: loradeck has no captioning model.")


@router.post("/refresh-embeddings")
def refresh_embeddings(request: Request) -> None:
    state_of(request).studio.embedding_library.refresh()
    return None


@router.post("/refresh-vae")
def refresh_vae() -> None:
    return None


# ---------------------------------------------------------------------------------------------------- checkpoint
@router.post("/unload-checkpoint")
async def unload_checkpoint(request: Request) -> dict[str, Any]:
    """Free the loaded model's memory (between jobs); the next job loads it again."""
    state = state_of(request)
    job = state.studio.submit_unload()
    await asyncio.wrap_future(job.future)
    return {}


@router.post("/reload-checkpoint")
async def reload_checkpoint(request: Request) -> dict[str, Any]:
    state = state_of(request)
    job = state.studio.switch_checkpoint(state.checkpoint)
    await asyncio.wrap_future(job.future)
    return {}


# ---------------------------------------------------------------------------------------------------- cmd-flags
@router.get("/cmd-flags")
def cmd_flags(request: Request) -> dict[str, Any]:
    """A1111's command-line flag names with loradeck's values where it has the same setting (never credentials)."""
    state = state_of(request)
    settings = state.studio.settings
    home = Path(settings.home)
    flags = dict(getattr(request.app.state, "cmd_flags", {}) or {})
    return {
        "data_dir": str(home),
        "models_dir": str(home / "models"),
        "ckpt_dir": str(settings.checkpoint_dir),
        "lora_dir": str(settings.lora_path),
        "esrgan_models_path": str(home / "models" / "ESRGAN"),
        "realesrgan_models_path": str(home / "models" / "RealESRGAN"),
        "swinir_models_path": str(home / "models" / "SwinIR"),
        "dat_models_path": str(home / "models" / "DAT"),
        "embeddings_dir": str(settings.embedding_roots[0]),
        "hypernetwork_dir": None,
        "vae_dir": None,
        "styles_file": [str(settings.styles_path)],
        "ui_settings_file": str(home / "config.json"),
        "api": True,
        "nowebui": False,
        "listen": bool(flags.get("listen", False)),
        "port": flags.get("port"),
        "api_auth": None,  # credentials are never listed; whether auth is on: "api_auth_enabled"
        "api_auth_enabled": bool(flags.get("api_auth_enabled", False)),
        "device": settings.device,
        "precision": settings.dtype,
        "no_half": settings.dtype == "fp32",
        "lowvram": settings.cpu_offload,
        "opt_split_attention": settings.attention_slicing,
        "skip_torch_cuda_test": True,
        "disable_safe_unpickle": False,  # pickles are read with weights_only=True only
        "sd_model": DEMO if state.checkpoint == DEMO else state.checkpoint,
    }
