"""``/sdapi/v1`` generation routes: txt2img, img2img, progress, interrupt, skip (A1111 shapes)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import anyio
from fastapi import APIRouter, Request

from loradeck.errors import Cancelled, InvalidRequest
from loradeck.prompt.tags import strip_tags
from loradeck.server.grid_routes import is_xyz, run_a1111_grid
from loradeck.server.images import decode_image, encode_png, fit_init_image
from loradeck.server.models import (
    GenerationResponse,
    Img2ImgRequest,
    ProgressResponse,
    ProgressState,
    Txt2ImgRequest,
)
from loradeck.server.service import ServerState
from loradeck.services.jobs import Job
from loradeck.services.limits import check_request
from loradeck.version import __version__
from loradeck.vocab import GenerationRequest, GenerationResult, HiresFix, Inpaint

router = APIRouter(prefix="/sdapi/v1", tags=["A1111"])


def state_of(request: Request) -> ServerState:
    return request.app.state.loradeck


def to_generation_request(
    body: Txt2ImgRequest, init_image=None, options=None, kind: str = "txt2img"
) -> GenerationRequest:
    """An A1111 request body as the studio's GenerationRequest; ``options``: the server's honoured options (defaults
    for what the body does not set). Fields we cannot honour are refused or answered with a warning
    (``a1111_fields``); names that are paths are refused (``names``)."""
    from loradeck.server.a1111_fields import check_fields
    from loradeck.server.names import check_generation_names

    check_fields(body, kind)
    check_generation_names(body)  # checkpoints and <lora:…> names: never a path (422)
    overrides = {**(options or {}), **(body.override_settings or {})}
    try:
        clip_skip = int(overrides.get("CLIP_stop_at_last_layers") or 1)
    except (TypeError, ValueError):
        raise InvalidRequest("override_settings.CLIP_stop_at_last_layers must be a whole number.") from None
    return GenerationRequest(
        prompt=strip_tags(body.prompt) if body.disable_extra_networks else body.prompt,
        negative_prompt=body.negative_prompt,
        seed=body.seed,
        variation_seed=body.subseed,
        variation_strength=body.subseed_strength,
        steps=body.steps,
        cfg_scale=body.cfg_scale,
        sampler=body.sampler_name or body.sampler_index or "Euler",
        scheduler=body.scheduler or "Automatic",
        width=body.width,
        height=body.height,
        batch_size=body.batch_size,
        batch_count=body.n_iter,
        clip_skip=clip_skip,
        init_image=init_image,
        denoising_strength=body.denoising_strength if body.denoising_strength is not None else 0.75,
        checkpoint=overrides.get("sd_model_checkpoint") or None,
        save=bool(body.save_images and not body.do_not_save_samples),
        hires=_hires(body) if init_image is None else None,
        styles=list(body.styles or []),
        tiling=bool(body.tiling if body.tiling is not None else overrides.get("tiling", False)),
    )


def honoured_options(state: ServerState) -> dict[str, Any]:
    from loradeck.server.a1111_options import HONOURED

    with state.lock:
        return {k: v for k, v in state.options.items() if k in HONOURED and k != "sd_model_checkpoint"}


def _hires(body: Txt2ImgRequest) -> HiresFix | None:
    if not body.enable_hr:
        return None
    return HiresFix(
        scale=body.hr_scale,
        upscaler=body.hr_upscaler or "Latent",
        steps=body.hr_second_pass_steps,
        denoising_strength=body.denoising_strength if body.denoising_strength is not None else 0.7,
        resize_x=body.hr_resize_x,
        resize_y=body.hr_resize_y,
        sampler=body.hr_sampler_name if body.hr_sampler_name not in (None, "", "Use same sampler") else None,
        scheduler=body.hr_scheduler if body.hr_scheduler not in (None, "", "Use same scheduler") else None,
    )


def info_dict(body: Txt2ImgRequest, req: GenerationRequest, result: GenerationResult) -> dict:
    """A1111's ``info`` keys (processing.Processed.js), filled from what the studio did."""
    from loradeck.server.a1111_fields import field_warnings

    extra = {"Schedule type": result.schedule} | ({"Lora hashes": result.lora_hashes} if result.lora_hashes else {})
    extra |= {"TI hashes": result.ti_hashes} if result.ti_hashes else {}
    seeds = result.seeds or [req.seed]
    total = len(seeds)
    return {
        "prompt": result.prompt,
        "all_prompts": [result.prompt] * total,
        "negative_prompt": result.negative_prompt,
        "all_negative_prompts": [result.negative_prompt] * total,
        "seed": seeds[0],
        "all_seeds": seeds,
        "subseed": seeds[0] if body.subseed == -1 else body.subseed,
        "all_subseeds": seeds if body.subseed == -1 else [body.subseed] * total,
        "subseed_strength": body.subseed_strength,
        "width": req.width,
        "height": req.height,
        "sampler_name": result.sampler or req.sampler,
        "cfg_scale": req.cfg_scale,
        "steps": req.steps,
        "batch_size": req.batch_size,
        "restore_faces": False,  # there is no face restorer; a request for one gets a warning
        "face_restoration_model": None,
        "sd_model_name": result.model_name,
        "sd_model_hash": result.model_hash,
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": body.seed_resize_from_w,
        "seed_resize_from_h": body.seed_resize_from_h,
        "denoising_strength": req.denoising_strength if req.init_image is not None else body.denoising_strength,
        "extra_generation_params": extra,
        "index_of_first_image": 0,
        "infotexts": [i.infotext for i in result.images],
        "styles": body.styles or [],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
        "clip_skip": req.clip_skip,
        # A1111: true whenever the U-Net takes mask conditioning (9-channel inpainting models, txt2img too)
        "is_using_inpainting_conditioning": result.inpainting_model,
        "version": f"loradeck {__version__}",
        "interrupted": result.interrupted,
        "warnings": result.warnings + field_warnings(body),
        "lora_coverage": [c.to_dict() for c in result.lora_coverage],  # loradeck's: per LoRA, matched/targeted
    }


async def _generate(state: ServerState, body: Txt2ImgRequest, req: GenerationRequest) -> GenerationResponse:
    plan = await anyio.to_thread.run_sync(state.studio.plan, req)  # 422/404 now, not after waiting in the queue
    job = state.studio.submit_generation(plan)
    try:
        result: GenerationResult = await asyncio.wrap_future(job.future)
    except Cancelled:  # cancelled while queued: A1111 answers an interrupted job with what it has, i.e. nothing
        result = GenerationResult([], req.prompt, req.negative_prompt, [], interrupted=True)

    def build() -> GenerationResponse:
        images = [encode_png(i.image, i.infotext) for i in result.images] if body.send_images else []
        params = body.model_dump()
        if isinstance(body, Img2ImgRequest):  # A1111 does not echo the pictures back
            params["init_images"], params["mask"] = None, None
        return GenerationResponse(images=images, parameters=params, info=json.dumps(info_dict(body, req, result)))

    return await anyio.to_thread.run_sync(build)


@router.post("/txt2img", response_model=GenerationResponse)
async def txt2img(body: Txt2ImgRequest, request: Request) -> GenerationResponse:
    state = state_of(request)
    req = to_generation_request(body, options=honoured_options(state))
    if is_xyz(body):
        return await run_a1111_grid(state, body, req)
    return await _generate(state, body, req)


@router.post("/img2img", response_model=GenerationResponse)
async def img2img(body: Img2ImgRequest, request: Request) -> GenerationResponse:
    if not body.init_images:
        raise InvalidRequest("img2img needs init_images: a list with at least one base64 picture.")

    def prepare():
        image = decode_image(body.init_images[0], "init_images[0]")
        return fit_init_image(image, body.width, body.height, body.resize_mode)

    def prepare_mask() -> Inpaint:
        mask = decode_image(body.mask, "mask")
        if mask.mode in ("RGBA", "LA") and mask.getchannel("A").getextrema()[0] < 255:
            mask = mask.getchannel("A")  # A1111: a mask with transparency is painted where opaque
        mask = fit_init_image(mask.convert("RGB"), body.width, body.height, body.resize_mode).convert("L")
        return Inpaint(
            mask=mask,
            blur=body.mask_blur if body.mask_blur is not None else max(body.mask_blur_x, body.mask_blur_y),
            fill=body.inpainting_fill,
            full_res=bool(body.inpaint_full_res),
            padding=body.inpaint_full_res_padding,
            invert=bool(body.inpainting_mask_invert),
        )

    req = to_generation_request(body, options=honoured_options(state_of(request)), kind="img2img")
    req.width, req.height = body.width, body.height
    check_request(req, state_of(request).studio.settings.limits)  # before decoding a picture of a refused size
    req.init_image = await anyio.to_thread.run_sync(prepare)
    multiplier = body.initial_noise_multiplier
    if multiplier is None:
        multiplier = honoured_options(state_of(request)).get("initial_noise_multiplier", 1.0)
    if not 0.0 <= multiplier <= 1.5:  # A1111's slider range is 0.5-1.5
        raise InvalidRequest(f"initial_noise_multiplier must be 0 to 1.5, not {multiplier}.")
    req.noise_multiplier = float(multiplier)
    if body.mask:
        req.inpaint = await anyio.to_thread.run_sync(prepare_mask)
    return await _generate(state_of(request), body, req)


# ---------------------------------------------------------------------------------------------------- progress
def progress_of(job: Job | None) -> ProgressResponse:
    if job is None:
        return ProgressResponse(progress=0.0, eta_relative=0.0, state=ProgressState())
    fraction, p = job.fraction, job.progress
    elapsed = time.time() - (job.started_at or time.time())
    eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
    state = ProgressState(
        skipped=job.skipped.is_set(),
        interrupted=job.interrupted.is_set(),
        job=f"{job.kind} {job.id}",
        job_count=p.batches,
        job_timestamp=time.strftime("%Y%m%d%H%M%S", time.localtime(job.started_at or time.time())),
        job_no=p.batch,
        sampling_step=p.step,
        sampling_steps=p.total,
    )
    return ProgressResponse(progress=round(fraction, 4), eta_relative=round(eta, 3), state=state, textinfo=job.label)


@router.get("/progress", response_model=ProgressResponse)
async def progress(request: Request, skip_current_image: bool = False) -> ProgressResponse:
    answer = progress_of(state_of(request).studio.running())
    if not skip_current_image:
        preview = request.app.state.studio.current_preview()
        if preview is not None:
            answer.current_image = encode_png(preview)
    return answer


@router.post("/interrupt")
async def interrupt(request: Request) -> dict[str, Any]:
    job = state_of(request).studio.running()
    if job is not None:
        job.interrupted.set()
    return {}


@router.post("/skip")
async def skip(request: Request) -> dict[str, Any]:
    job = state_of(request).studio.running()
    if job is not None:
        job.skipped.set()
    return {}
