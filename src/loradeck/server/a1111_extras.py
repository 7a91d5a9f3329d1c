"""``POST /sdapi/v1/extra-single-image`` and ``/extra-batch-images``: A1111's "Extras" upscale.

As A1111's postprocessing: ``resize_mode`` 0 scales by ``upscaling_resize``; 1 scales to cover
``upscaling_resize_w``×``upscaling_resize_h`` and, with ``upscaling_crop``, crops the centre to exactly that.
``upscaler_1`` does the work; ``upscaler_2`` (when not "None") upscales the same input and is blended in with
``extras_upscaler_2_visibility``. Upscalers are A1111's names: "None", "Lanczos", "Nearest" and the model files
(``engine.upscalers``). Face restoration (GFPGAN/CodeFormer visibility above 0) is not available: the picture is
upscaled and ``html_info`` says the restoration was not done. Jobs run on the device queue, after the generation
that runs now.
"""

from __future__ import annotations

import asyncio
import html

from fastapi import APIRouter, Request
from PIL import Image
from pydantic import BaseModel, ConfigDict

from loradeck.errors import InvalidRequest
from loradeck.server.images import decode_image, encode_png
from loradeck.server.service import ServerState

router = APIRouter(prefix="/sdapi/v1", tags=["A1111"])


class ExtrasOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    resize_mode: int = 0
    show_extras_results: bool = True
    gfpgan_visibility: float = 0
    codeformer_visibility: float = 0
    codeformer_weight: float = 0
    upscaling_resize: float = 2
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str | None = "None"
    upscaler_2: str | None = "None"
    extras_upscaler_2_visibility: float = 0
    upscale_first: bool = False


class ExtrasSingleImageRequest(ExtrasOptions):
    image: str = ""


class FileData(BaseModel):
    data: str
    name: str = ""


class ExtrasBatchImagesRequest(ExtrasOptions):
    imageList: list[FileData]  # noqa: N815 (A1111's field name)


class ExtrasSingleImageResponse(BaseModel):
    html_info: str
    image: str | None = None


class ExtrasBatchImagesResponse(BaseModel):
    html_info: str
    images: list[str]


def state_of(request: Request) -> ServerState:
    return request.app.state.loradeck


def _info(opts: ExtrasOptions, picture: Image.Image | None) -> str:
    notes = []
    if opts.gfpgan_visibility > 0 or opts.codeformer_visibility > 0:
        notes.append("Face restoration was not done: loradeck has no GFPGAN or CodeFormer.")
    if picture is not None and opts.upscaler_1 not in (None, "", "None"):
        notes.append(f"Upscaler: {opts.upscaler_1}, size {picture.width}x{picture.height}")
    return "".join(f"<p>{html.escape(n)}</p>" for n in notes)


async def _run(state: ServerState, pictures: list[Image.Image], opts: ExtrasOptions) -> list[Image.Image]:
    job = state.studio.submit_extras(pictures, opts)  # on the device queue: a model upscaler uses the device
    return await asyncio.wrap_future(job.future)


@router.post("/extra-single-image", response_model=ExtrasSingleImageResponse)
async def extra_single_image(body: ExtrasSingleImageRequest, request: Request) -> ExtrasSingleImageResponse:
    picture = decode_image(body.image, "image")
    (out,) = await _run(state_of(request), [picture], body)
    return ExtrasSingleImageResponse(html_info=_info(body, out), image=encode_png(out))


@router.post("/extra-batch-images", response_model=ExtrasBatchImagesResponse)
async def extra_batch_images(body: ExtrasBatchImagesRequest, request: Request) -> ExtrasBatchImagesResponse:
    if not body.imageList:
        raise InvalidRequest("imageList is empty; send at least one {data, name} picture.")
    pictures = [decode_image(f.data, f"imageList[{i}]") for i, f in enumerate(body.imageList)]
    outs = await _run(state_of(request), pictures, body)
    return ExtrasBatchImagesResponse(html_info=_info(body, outs[0]), images=[encode_png(o) for o in outs])
