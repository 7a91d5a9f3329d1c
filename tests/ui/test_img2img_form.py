"""The Generate tab's image-to-image and inpainting fields: what they put into the request, and that the studio then
keeps every unmasked pixel of the picture (the same path the API's img2img with a mask takes)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from loradeck.errors import InvalidRequest
from loradeck.ui.img2img import apply_img2img, painted_mask
from loradeck.vocab import GenerationRequest


def _picture(w=40, h=32) -> Image.Image:
    im = Image.new("RGB", (w, h), (200, 40, 40))
    ImageDraw.Draw(im).ellipse((8, 8, 24, 24), fill=(30, 60, 220))
    return im


def _strokes(size, box) -> Image.Image:
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle(box, fill=(255, 255, 255, 255))
    return layer


def _values(editor, mask=None, **kw):
    v = dict(denoise=0.6, blur=0, content="latent noise", area="Whole picture", padding=16, invert=False) | kw
    return [editor, mask, v["denoise"], v["blur"], v["content"], v["area"], v["padding"], v["invert"]]


def test_no_picture_leaves_the_request_alone():
    request = GenerationRequest("x")
    assert apply_img2img(request, _values(None)) is request
    assert apply_img2img(request, _values({"background": None, "layers": [], "composite": None})) is request
    with pytest.raises(InvalidRequest, match="needs a picture"):
        apply_img2img(request, _values(None, mask=Image.new("L", (8, 8), 255)))


def test_painted_strokes_become_the_mask_and_the_fields_go_along():
    picture = _picture()
    editor = {"background": picture, "layers": [_strokes(picture.size, (0, 0, 19, 31))], "composite": picture}
    req = apply_img2img(GenerationRequest("x", width=None, height=None), _values(editor, area="Only masked"))
    assert req.init_image.size == (40, 32) and (req.width, req.height) == (40, 32)
    assert req.denoising_strength == 0.6 and req.hires is None
    mask = np.asarray(req.inpaint.mask)
    assert (mask[:, :20] == 255).all() and (mask[:, 20:] == 0).all()
    assert (req.inpaint.fill, req.inpaint.full_res, req.inpaint.padding, req.inpaint.blur) == (2, True, 16, 0)
    assert painted_mask({"background": picture, "layers": [Image.new("RGBA", (40, 32))]}) is None  # nothing painted


def test_an_uploaded_mask_wins_and_is_fitted_to_the_picture():
    picture = _picture()
    editor = {"background": picture, "layers": [_strokes(picture.size, (0, 0, 39, 31))], "composite": picture}
    upload = Image.new("L", (80, 64), 0)
    ImageDraw.Draw(upload).rectangle((40, 0, 79, 63), fill=255)  # right half, at twice the size
    req = apply_img2img(GenerationRequest("x"), _values(editor, mask=upload, invert=True))
    mask = np.asarray(req.inpaint.mask)
    assert req.inpaint.mask.size == (40, 32) and req.inpaint.invert
    assert (mask[:, :17] < 8).all() and (mask[:, 23:] > 247).all()  # Lanczos, as A1111: soft only at the edge


def test_the_studio_keeps_every_unmasked_pixel(tmp_path):
    from loradeck.services.studio import Studio

    picture = _picture()
    editor = {"background": picture, "layers": [_strokes(picture.size, (0, 0, 15, 31))], "composite": picture}
    req = apply_img2img(GenerationRequest("a green triangle", seed=3, steps=4), _values(editor, denoise=0.9))
    req.save = False
    out = np.asarray(Studio(home=tmp_path).generate(req).images[0].image).astype(int)
    src = np.asarray(picture).astype(int)
    assert out.shape == src.shape
    assert np.array_equal(out[:, 16:], src[:, 16:])  # blur 0: untouched outside the painted strokes
    assert np.abs(out[:, :16] - src[:, :16]).mean() > 5  # and the painted part was redrawn
