"""Issue 19: request validation refuses non-finite and out-of-range numbers and decompression bombs with 422 and one
sentence naming the field, never 500; normal requests still work."""

from __future__ import annotations

import base64
import json
import struct
import zlib

import pytest
from fastapi.testclient import TestClient

from loradeck.server import create_app
from tests.helpers.hostile import make_home, png_b64
from tests.helpers.hostile import txt2img_body as _txt2img

# ---------------------------------------------------------------------------------------------------- numbers
RAW = [  # (body as JSON text — JSON allows NaN and Infinity — and words the sentence must contain)
    (_txt2img(seed=2**70), "seed is 1180591620717411303424, which does not fit in 64 bits"),
    (
        _txt2img(seed=2**64 - 1, batch_size=2),
        "The seed must be -1 (random) or a whole number from 0 to 18446744073709551615",
    ),
    (_txt2img(seed=-2), "The seed must be -1"),
    (_txt2img(subseed=2**64 - 1, n_iter=2), "The variation seed (subseed) must be"),
    (_txt2img(cfg_scale=1e308), "The CFG scale must be between 0 and 100, not 1e+308"),
    (_txt2img(cfg_scale=-1), "The CFG scale must be between 0 and 100"),
    (_txt2img(subseed_strength=1.5), "variation strength (subseed_strength) must be between 0 and 1"),
    (_txt2img(denoising_strength=7), "The denoising strength must be between 0 and 1"),
    (_txt2img(enable_hr=True, hr_scale=1e308), "The hires scale (hr_scale) must be between 0 and 16"),
    (_txt2img(enable_hr=True, hr_second_pass_steps=10**9), "hires steps (hr_second_pass_steps) must be between 0"),
    (_txt2img(override_settings={"CLIP_stop_at_last_layers": 10**6}), "CLIP skip"),
    (_txt2img(width=2**70), "does not fit in 64 bits"),
    (_txt2img(n_iter=2**40), "n_iter must be between 1 and 100"),
    (_txt2img(steps=10**6), "Steps must be between 1 and 150, not 1000000"),
    (_txt2img(steps=1e20), "steps: "),  # pydantic's own sentence, with where
]
NON_FINITE = [  # JSON text with NaN/Infinity spliced in (json.dumps would write them too, but say so explicitly)
    ('{"prompt": "a", "steps": Infinity}', "steps is Infinity"),
    ('{"prompt": "a", "cfg_scale": NaN}', "cfg_scale is NaN"),
    ('{"prompt": "a", "cfg_scale": -Infinity}', "cfg_scale is -Infinity"),
    ('{"prompt": "a", "cfg_scale": "nan"}', "cfg_scale"),  # a string pydantic would read as NaN
    ('{"prompt": "a", "steps": 1e400}', "steps is Infinity"),  # overflows to inf while parsing
    ('{"prompt": "a", "eta": NaN}', "eta is NaN"),  # a field we ignore but echo back
    ('{"prompt": "a", "my_extension_field": [1, NaN]}', "my_extension_field[1] is NaN"),
    ('{"prompt": "a", "override_settings": {"eta_noise_seed_delta": Infinity}}', "eta_noise_seed_delta is Infinity"),
    ('{"prompt": "a", "alwayson_scripts": {"x": {"args": [{"w": NaN}]}}}', "alwayson_scripts.x.args[0].w is NaN"),
]


@pytest.fixture(scope="module")
def light(tmp_path_factory):
    """A server that never needs a model: everything here is refused at the door."""
    from loradeck.services.studio import Studio

    w = make_home(tmp_path_factory.mktemp("numbers"))
    with TestClient(create_app(Studio(home=w["home"]))) as client:
        yield client


def _post_raw(client, route: str, text: str):
    return client.post(route, content=text.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize("route", ["/sdapi/v1/txt2img", "/sdapi/v1/img2img"])
@pytest.mark.parametrize("body, words", RAW, ids=[str(i) for i in range(len(RAW))])
def test_out_of_range_numbers_are_422_with_a_sentence(light, route, body, words):
    if route.endswith("img2img"):
        body = body | {"init_images": [png_b64()]}
        if body.get("enable_hr"):
            pytest.skip("img2img has no hires pass")
    r = _post_raw(light, route, json.dumps(body))
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"], r.json()["detail"]


@pytest.mark.parametrize("text, words", NON_FINITE)
def test_non_finite_numbers_are_422_never_500(light, text, words):
    r = _post_raw(light, "/sdapi/v1/txt2img", text)
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"], r.json()["detail"]


@pytest.mark.parametrize(
    "route, text, words",
    [
        ("/sdapi/v1/options", '{"some_option": NaN}', "some_option is NaN"),
        ("/sdapi/v1/options", '{"sd_model_checkpoint": "demo", "x": [Infinity]}', "x[0] is Infinity"),
        ("/sdapi/v1/png-info", '{"image": "x", "extra": NaN}', "extra is NaN"),
        ("/loradeck/v1/train", '{"data": "pics", "name": "x", "lr": Infinity}', "lr is Infinity"),
        ("/loradeck/v1/train", '{"data": "pics", "name": "x", "alpha": NaN}', "alpha is NaN"),
        ("/loradeck/v1/train", '{"data": "pics", "name": "x", "seed": 1180591620717411303424}', "64 bits"),
        ("/loradeck/v1/train", '{"data": "pics", "name": "x", "lr": 1e308}', "lr: Input should be less than"),
        ("/loradeck/v1/civitai/download", '{"ref": "1", "version_id": 1180591620717411303424}', "64 bits"),
    ],
)
def test_every_body_refuses_bad_numbers(light, route, text, words):
    r = _post_raw(light, route, text)
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"], r.json()["detail"]
    assert light.get("/sdapi/v1/options").status_code == 200  # nothing unwritable was stored


def test_civitai_search_limit_is_bounded(light):
    r = light.get("/loradeck/v1/civitai/search", params={"limit": 10**30})
    assert r.status_code == 422 and r.json()["detail"].startswith("query.limit: Input should be")


# ---------------------------------------------------------------------------------------------------- image bombs
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit grey PNG of width×height zeros, compressed as it is written (kilobytes, whatever the size)."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    data = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def text_bomb_png() -> bytes:
    """A 1×1 PNG whose zTXt chunk inflates to 64 MB (Pillow caps text chunks at 1 MB)."""
    small = base64.b64decode(png_b64((1, 1)))
    ztxt = b"parameters\x00\x00" + zlib.compress(b"a" * 64_000_000, 9)
    return small[:33] + _chunk(b"zTXt", ztxt) + small[33:]


BOMBS = {
    "over twice Pillow's limit": (bomb_png(20_000, 20_000), "decompression bomb"),
    "between one and two times the limit": (bomb_png(10_000, 10_000), "10000x10000 pixels, over the limit of"),
    "text chunk": (text_bomb_png(), "not a readable base64 picture"),
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_decompression_bombs_are_422(light, name):
    data, words = BOMBS[name]
    assert len(data) < 300_000  # a small upload…
    picture = base64.b64encode(data).decode()
    for route, body in (
        ("/sdapi/v1/png-info", {"image": picture}),
        ("/sdapi/v1/img2img", _txt2img(init_images=[picture])),
    ):
        r = light.post(route, json=body)
        assert r.status_code == 422, (route, r.text)
        assert words in r.json()["detail"], r.json()["detail"]


# ---------------------------------------------------------------------------------------------------- still works
def test_normal_requests_still_work(light):
    ok = light.post("/sdapi/v1/png-info", json={"image": png_b64()})
    assert ok.status_code == 200 and ok.json()["info"] == ""
    assert (
        light.post("/sdapi/v1/options", json={"samples_format": "png", "initial_noise_multiplier": 1.25}).status_code
        == 200
    )
    assert light.get("/sdapi/v1/options").json()["initial_noise_multiplier"] == 1.25
    assert light.get("/loradeck/v1/loras/red").json()["name"] == "red"
    assert light.get("/loradeck/v1/loras/red/preview").status_code == 200
    missing = light.post("/sdapi/v1/options", json={"sd_model_checkpoint": "no-such-model"})
    assert missing.status_code == 404 and "Checkpoint not found: no-such-model" in missing.json()["detail"]
    windows_style = light.post("/sdapi/v1/options", json={"sd_model_checkpoint": "sub\\no-such-model"})
    assert windows_style.status_code == 404  # a backslashed library name is a name, not a path
