"""Image to image and inpainting in the Generate tab: a picture to start from, a mask painted on it (or uploaded),
and A1111's inpainting fields. The pure part (``apply_img2img``) turns the form's values into the request's
``init_image``/``inpaint``, so it is tested without a browser."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image

from loradeck.errors import InvalidRequest
from loradeck.vocab import GenerationRequest, Inpaint

# A1111's "Masked content" choices, in inpainting_fill order (0–3)
MASKED_CONTENT = ["fill", "original", "latent noise", "latent nothing"]
INPAINT_AREAS = ["Whole picture", "Only masked"]


@dataclass
class Img2ImgForm:
    """The components, in the order ``apply_img2img`` takes their values."""

    inputs: list[Any]


def build_img2img(gr: Any) -> Img2ImgForm:
    with gr.Accordion("Image to image · inpaint", open=False, elem_id="ld-img2img"):
        picture = gr.ImageEditor(
            type="pil",
            label="Picture · paint what to redraw",
            sources=["upload", "clipboard"],
            brush=gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=24),
            eraser=gr.Eraser(),
            transforms=[],
            layers=False,
            elem_id="ld-init-image",
        )
        mask = gr.Image(
            type="pil",
            label="Mask (optional; white = redraw; wins over the painted one)",
            elem_id="ld-mask",
            height=160,
        )
        with gr.Row():
            denoise = gr.Slider(0.01, 1, 0.75, step=0.01, label="Denoising strength", elem_id="ld-denoise")
            blur = gr.Slider(0, 64, 4, step=1, label="Mask blur", elem_id="ld-mask-blur")
        with gr.Row():
            content = gr.Dropdown(MASKED_CONTENT, value="original", label="Masked content", elem_id="ld-fill")
            area = gr.Radio(INPAINT_AREAS, value=INPAINT_AREAS[0], label="Inpaint area", elem_id="ld-inpaint-area")
        with gr.Row():
            padding = gr.Slider(0, 256, 32, step=4, label="Only masked padding, px", elem_id="ld-padding")
            invert = gr.Checkbox(False, label="Redraw what is not masked", elem_id="ld-invert")
    return Img2ImgForm([picture, mask, denoise, blur, content, area, padding, invert])


def painted_mask(editor: Any) -> Image.Image | None:
    """The strokes of an ImageEditor value as an "L" mask (255 where painted), None when nothing was painted."""
    layers = (editor or {}).get("layers") or []
    found = None
    for layer in layers:
        if layer is None:
            continue
        alpha = np.asarray(layer.convert("RGBA"))[..., 3] > 0
        found = alpha if found is None else found | alpha
    if found is None or not found.any():
        return None
    return Image.fromarray(found.astype(np.uint8) * 255, "L")


def apply_img2img(request: GenerationRequest, values: list[Any]) -> GenerationRequest:
    """The request with the img2img/inpaint fields set from the form (unchanged when no picture was given)."""
    editor, uploaded, denoise, blur, content, area, padding, invert = values
    picture = (editor or {}).get("background") if isinstance(editor, dict) else editor
    if picture is None:
        if uploaded is not None:
            raise InvalidRequest("A mask needs a picture to start from: add one under “Image to image · inpaint”.")
        return request
    picture = picture.convert("RGB")
    mask = uploaded if uploaded is not None else painted_mask(editor)
    inpaint = None
    if mask is not None:
        mask = mask.convert("L")
        if mask.size != picture.size:  # A1111 resizes the mask to the picture
            mask = mask.resize(picture.size, Image.Resampling.LANCZOS)
        inpaint = Inpaint(
            mask=mask,
            blur=int(blur),
            fill=MASKED_CONTENT.index(content) if content in MASKED_CONTENT else 1,
            full_res=area == INPAINT_AREAS[1],
            padding=int(padding),
            invert=bool(invert),
        )
    width, height = request.width or picture.width, request.height or picture.height
    return replace(
        request,
        init_image=picture,
        denoising_strength=float(denoise),
        inpaint=inpaint,
        width=width - width % 8,
        height=height - height % 8,
        hires=None,  # A1111's hires fix is txt2img only
    )
