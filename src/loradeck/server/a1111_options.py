"""``GET/POST /sdapi/v1/options``: A1111's standard option keys, each with its meaning in loradeck.

Three kinds of keys, so that no option passes silently:

- **honoured**: they change what loradeck does (``sd_model_checkpoint`` loads that model; ``CLIP_stop_at_last_layers``,
  ``tiling`` and ``initial_noise_multiplier`` are the defaults of requests that do not set them);
- **kept**: preferences of A1111's web page (``send_seed``, ``send_size``, ``jpeg_quality``, …) that have no effect on
  the API in A1111 either; stored and read back, so clients that toggle them work;
- **fixed**: what loradeck always does (``samples_format`` png, ``eta_noise_seed_delta`` 0, ``randn_source`` CPU, …).
  Setting one to its value is fine; another value is not applied and is named in the answer's ``ignored``.

Unknown keys are not stored and are named in ``ignored`` too. Honoured and kept values persist in
``<home>/config.json`` (A1111 keeps its options in a file of that name), written atomically, and are read back when
the server starts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, Request

from loradeck.errors import InvalidRequest, LoradeckError
from loradeck.server.json_numbers import check_numbers
from loradeck.server.service import DEMO, ServerState

router = APIRouter(prefix="/sdapi/v1", tags=["A1111"])
log = logging.getLogger("loradeck.server")

CONFIG_FILE = "config.json"

HONOURED: dict[str, Any] = {
    "sd_model_checkpoint": DEMO,
    "CLIP_stop_at_last_layers": 1,
    "tiling": False,
    "initial_noise_multiplier": 1.0,
}

KEPT: dict[str, Any] = {
    "send_seed": True,
    "send_size": True,
    "samples_save": True,
    "grid_save": True,
    "save_txt": False,
    "jpeg_quality": 80,
    "show_progressbar": True,
    "live_previews_enable": True,
    "live_preview_refresh_period": 1000,
    "show_progress_every_n_steps": 10,
    "interrupt_after_current": True,
    "lora_preferred_name": "Alias from file",
    "img2img_background_color": "#ffffff",
    "samples_filename_pattern": "",
    "js_modal_lightbox": True,
    "quicksettings_list": ["sd_model_checkpoint"],
}

FIXED: dict[str, Any] = {
    "samples_format": "png",
    "grid_format": "png",
    "enable_pnginfo": True,
    "eta_noise_seed_delta": 0,
    "randn_source": "CPU",
    "sd_vae": "Automatic",
    "sd_hypernetwork": "None",
    "sd_lora": "None",
    "face_restoration": False,
    "face_restoration_model": None,
    "upscaler_for_img2img": None,
    "eta_ddim": 0.0,
    "eta_ancestral": 1.0,
    "s_churn": 0.0,
    "s_tmin": 0.0,
    "s_tmax": 0.0,
    "s_noise": 1.0,
    "emphasis": "Original",
    "token_merging_ratio": 0.0,
    "upcast_attn": False,
    "img2img_fix_steps": False,
    "inpainting_mask_weight": 1.0,
    "lora_add_hashes_to_infotext": True,
    "add_model_hash_to_info": True,
    "add_model_name_to_info": True,
    "add_version_to_infotext": True,
    "sd_vae_overrides_per_model_preferences": True,
    "use_old_hires_fix_width_height": False,
    "hires_fix_use_firstpass_conds": False,
    "disable_all_extensions": "none",
}
PATH_KEYS = ("outdir_samples", "outdir_txt2img_samples", "outdir_img2img_samples", "outdir_extras_samples")


def state_of(request: Request) -> ServerState:
    return request.app.state.loradeck


def config_path(state: ServerState) -> Path:
    return Path(state.studio.settings.home) / CONFIG_FILE


def effective(state: ServerState, key: str) -> Any:
    """The value an honoured option has now (what a request that does not set it uses)."""
    with state.lock:
        return state.options.get(key, HONOURED.get(key))


def restore(state: ServerState) -> None:
    """Read ``<home>/config.json`` into the state; a model named there is loaded (a missing one is logged)."""
    path = config_path(state)
    if not path.is_file():
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return
    if not isinstance(data, dict):
        return
    with state.lock:
        state.options.update(
            {k: v for k, v in data.items() if k in KEPT or k in HONOURED and k != "sd_model_checkpoint"}
        )
    name = data.get("sd_model_checkpoint")
    if isinstance(name, str) and name not in ("", DEMO):
        try:
            state.switch_checkpoint(name)
        except LoradeckError as exc:
            log.warning("the model %s named in %s is not loaded: %s", name, path, exc)


def _save(state: ServerState) -> None:
    path = config_path(state)
    with state.lock:
        data = {k: v for k, v in state.options.items() if k in KEPT or k in HONOURED}
        data["sd_model_checkpoint"] = state.checkpoint
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config.", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------------- routes
@router.get("/options")
def get_options(request: Request) -> dict[str, Any]:
    state = state_of(request)
    settings = state.studio.settings
    outputs = settings.outputs_path
    with state.lock:
        chosen = {k: v for k, v in state.options.items() if k in KEPT or k in HONOURED}
        checkpoint = state.checkpoint
    return {
        **FIXED,
        **KEPT,
        **HONOURED,
        **chosen,
        "outdir_samples": "",
        "outdir_txt2img_samples": str(outputs / "txt2img-images"),
        "outdir_img2img_samples": str(outputs / "img2img-images"),
        "outdir_extras_samples": str(outputs / "extras-images"),
        "sd_model_checkpoint": checkpoint,
        "sd_checkpoint_hash": _checkpoint_sha(state),
    }


@router.post("/options")
async def set_options(body: dict[str, Any], request: Request) -> dict[str, Any]:
    """Apply the options; answers ``{"applied": [...], "ignored": {key: why}}`` (A1111 answers null).

    ``sd_model_checkpoint`` loads that model first, by its library name (404 unknown, 422 for a path, 500 when it
    cannot load)."""
    check_numbers(body)  # options are echoed back by GET: a NaN kept here would break every later answer
    state = state_of(request)
    name = body.get("sd_model_checkpoint")
    if name and name != state.checkpoint:
        job = await anyio.to_thread.run_sync(state.switch_checkpoint, str(name))  # 422 for a path, 404 unknown
        await asyncio.wrap_future(job.future)
    applied, ignored, store = [], {}, {}
    for key, value in body.items():
        if key == "sd_model_checkpoint":
            applied.append(key)
        elif key == "sd_checkpoint_hash":  # read-only; clients echo a whole GET back
            continue
        elif key in HONOURED or key in KEPT:
            store[key] = _checked(key, value)
            applied.append(key)
        elif key in FIXED or key in PATH_KEYS:
            if key in FIXED and value == FIXED[key]:
                applied.append(key)
            else:
                ignored[key] = f"loradeck always uses {FIXED.get(key, 'its own output folders')!r}"
        else:
            ignored[key] = "not an option loradeck knows"
    with state.lock:
        state.options.update(store)
    _save(state)
    if ignored:
        log.info("options not applied: %s", ", ".join(ignored))
    return {"applied": applied, "ignored": ignored}


def _checked(key: str, value: Any) -> Any:
    if key == "CLIP_stop_at_last_layers":
        if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= int(value) <= 12:
            raise InvalidRequest(f"Option CLIP_stop_at_last_layers must be a whole number from 1 to 12, not {value!r}.")
        return int(value)
    if key == "initial_noise_multiplier":
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1.5:
            raise InvalidRequest(f"Option initial_noise_multiplier must be a number from 0 to 1.5, not {value!r}.")
        return float(value)
    if key == "tiling" and not isinstance(value, bool):
        raise InvalidRequest(f"Option tiling must be true or false, not {value!r}.")
    return value


def _checkpoint_sha(state: ServerState) -> str | None:
    if state.checkpoint == DEMO:
        return None
    entry = next((c for c in state.studio.library.checkpoints() if c.title == state.checkpoint), None)
    return entry.sha256 if entry else None
