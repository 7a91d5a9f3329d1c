"""What A1111's suite only checks for a 200, checked for its meaning: listings, options, ignored fields, tiling,
hires with denoising 0, the demo's fast path, extras, model upscalers in extras and in the hires fix."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import requests
from PIL import Image

from tests.helpers.upscalers import reference_upscale, write_upscaler
from tests.server.helpers import b64_to_array

SMALL = {"prompt": "a red circle on a blue background", "seed": 7, "steps": 3, "width": 32, "height": 32}


def b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def b64_image(data: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")


def txt2img(url: str, **fields) -> dict:
    response = requests.post(f"{url}/sdapi/v1/txt2img", json={**SMALL, **fields})
    assert response.status_code == 200, response.text
    body = response.json()
    body["info"] = json.loads(body["info"])
    return body


@pytest.fixture(scope="module")
def esrgan(served):
    """A random-weight ESRGAN (RRDB) ×4 file in <home>/models/ESRGAN."""
    net = write_upscaler(served["home"] / "models" / "ESRGAN" / "4x-TestRRDB.pth", "esrgan", seed=11)
    yield net
    (served["home"] / "models" / "ESRGAN" / "4x-TestRRDB.pth").unlink()


# ---------------------------------------------------------------------------------------------------- listings
def test_listings_say_what_loradeck_has(served, esrgan):
    url = served["url"] + "/sdapi/v1"
    names = [u["name"] for u in requests.get(f"{url}/upscalers").json()]
    assert names[:3] == ["None", "Lanczos", "Nearest"] and "4x-TestRRDB" in names
    modes = [m["name"] for m in requests.get(f"{url}/latent-upscale-modes").json()]
    assert modes[0] == "Latent" and "Latent (nearest-exact)" in modes
    for empty in ("sd-vae", "hypernetworks", "face-restorers", "realesrgan-models", "script-info", "extensions"):
        assert requests.get(f"{url}/{empty}").json() == [], empty
    assert requests.get(f"{url}/embeddings").json() == {"loaded": {}, "skipped": {}}
    flags = requests.get(f"{url}/cmd-flags").json()
    assert flags["data_dir"] == str(served["home"]) and flags["api_auth"] is None
    assert requests.post(f"{url}/interrogate", json={"image": "", "model": "clip"}).status_code == 422


# ---------------------------------------------------------------------------------------------------- options
def test_options_have_a1111_keys_and_say_what_they_ignore(served):
    url = served["url"] + "/sdapi/v1/options"
    options = requests.get(url).json()
    for key in ("send_seed", "samples_format", "CLIP_stop_at_last_layers", "sd_vae", "eta_noise_seed_delta"):
        assert key in options, key
    answer = requests.post(url, json={"samples_format": "jpg", "eta_noise_seed_delta": 31337, "send_size": False})
    assert answer.status_code == 200
    assert set(answer.json()["ignored"]) == {"samples_format", "eta_noise_seed_delta"}
    after = requests.get(url).json()
    assert after["samples_format"] == "png" and after["eta_noise_seed_delta"] == 0 and after["send_size"] is False
    saved = json.loads((served["home"] / "config.json").read_text())
    assert saved["send_size"] is False and "samples_format" not in saved
    requests.post(url, json={"send_size": True})


def test_clip_skip_option_is_the_default_of_requests(served):
    url = served["url"]
    plain = txt2img(url)
    requests.post(f"{url}/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 2})
    try:
        skipped = txt2img(url)
        explicit = txt2img(url, override_settings={"CLIP_stop_at_last_layers": 1})
    finally:
        requests.post(f"{url}/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 1})
    assert "Clip skip: 2" in skipped["info"]["infotexts"][0] and skipped["info"]["clip_skip"] == 2
    assert np.array_equal(b64_to_array(plain["images"][0]), b64_to_array(explicit["images"][0]))
    assert requests.post(f"{url}/sdapi/v1/options", json={"CLIP_stop_at_last_layers": "x"}).status_code == 422


# ---------------------------------------------------------------------------------------------------- fields
def test_restore_faces_is_answered_with_a_warning(served):
    body = txt2img(served["url"], restore_faces=True)
    assert body["info"]["restore_faces"] is False
    assert any("restore_faces" in w for w in body["info"]["warnings"])


def test_a_script_loradeck_lacks_is_refused_by_name(served):
    response = requests.post(f"{served['url']}/sdapi/v1/txt2img", json={**SMALL, "script_name": "sd upscale"})
    assert response.status_code == 422 and "sd upscale" in response.json()["detail"]


def test_tiling_changes_the_picture_and_is_restored(served):
    url = served["url"]
    plain = txt2img(url)
    tiled = txt2img(url, tiling=True)
    again = txt2img(url)
    assert "Tiling: True" in tiled["info"]["infotexts"][0]
    assert not np.array_equal(b64_to_array(plain["images"][0]), b64_to_array(tiled["images"][0]))
    assert np.array_equal(b64_to_array(plain["images"][0]), b64_to_array(again["images"][0]))  # convs restored


def test_hires_with_denoising_zero_upscales_the_first_pass(served):
    url = served["url"]
    first = b64_image(txt2img(url)["images"][0])
    hires = txt2img(url, enable_hr=True, hr_scale=2, hr_upscaler="Lanczos", denoising_strength=0)
    got = b64_image(hires["images"][0])
    assert got.size == (64, 64)
    assert np.array_equal(np.asarray(got), np.asarray(first.resize((64, 64), Image.Resampling.LANCZOS)))


def test_demo_answers_a_large_request_drawn_at_native_size(served):
    url = served["url"]
    small = b64_image(txt2img(url)["images"][0])
    large = txt2img(url, width=512, height=512)
    picture = b64_image(large["images"][0])
    assert picture.size == (512, 512)
    assert np.array_equal(np.asarray(picture), np.asarray(small.resize((512, 512), Image.Resampling.LANCZOS)))
    assert any("drew this 512x512 picture at 32x32" in w for w in large["info"]["warnings"])
    infotext = large["info"]["infotexts"][0]
    assert "Size: 512x512" in infotext and "Demo drawn at: 32x32" in infotext


# ---------------------------------------------------------------------------------------------------- extras
def test_extras_lanczos_scale_crop_and_blend(served):
    url = served["url"] + "/sdapi/v1"
    rng = np.random.default_rng(0)
    source = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    by = requests.post(f"{url}/extra-single-image", json={"image": b64(source), "upscaler_1": "Lanczos"}).json()
    assert np.array_equal(
        np.asarray(b64_image(by["image"])), np.asarray(source.resize((64, 48), Image.Resampling.LANCZOS))
    )
    to = requests.post(
        f"{url}/extra-single-image",
        json={
            "image": b64(source),
            "resize_mode": 1,
            "upscaling_resize_w": 40,
            "upscaling_resize_h": 40,
            "upscaler_1": "Nearest",
            "upscaler_2": "Lanczos",
            "extras_upscaler_2_visibility": 0.5,
        },
    ).json()
    scale = max(40 / 32, 40 / 24)
    size = (int(32 * scale), int(24 * scale))
    blend = Image.blend(
        source.resize(size, Image.Resampling.NEAREST), source.resize(size, Image.Resampling.LANCZOS), 0.5
    )
    left, top = (size[0] - 40) // 2, (size[1] - 40) // 2
    expected = blend.crop((left, top, left + 40, top + 40))
    assert np.array_equal(np.asarray(b64_image(to["image"])), np.asarray(expected))
    batch = requests.post(
        f"{url}/extra-batch-images",
        json={
            "imageList": [{"data": b64(source), "name": "a.png"}] * 2,
            "upscaler_1": "Lanczos",
            "upscaling_resize": 1.5,
        },
    ).json()
    assert [b64_image(i).size for i in batch["images"]] == [(48, 36), (48, 36)]
    unknown = requests.post(f"{url}/extra-single-image", json={"image": b64(source), "upscaler_1": "4x-Nope"})
    assert unknown.status_code == 422 and "4x-Nope" in unknown.json()["detail"]


def test_extras_and_hires_with_a_model_upscaler(served, esrgan):
    url = served["url"]
    rng = np.random.default_rng(1)
    source = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    response = requests.post(
        f"{url}/sdapi/v1/extra-single-image",
        json={"image": b64(source), "upscaler_1": "4x-TestRRDB", "upscaling_resize": 4},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert np.array_equal(np.asarray(b64_image(answer["image"])), np.asarray(reference_upscale(esrgan, source)))
    first = b64_image(txt2img(url, width=16, height=16)["images"][0])
    hires = txt2img(
        url, width=16, height=16, enable_hr=True, hr_scale=4, hr_upscaler="4x-TestRRDB", denoising_strength=0
    )
    assert not hires["info"]["warnings"]  # no fallback to Lanczos
    assert np.array_equal(np.asarray(b64_image(hires["images"][0])), np.asarray(reference_upscale(esrgan, first)))
    redrawn = txt2img(url, width=16, height=16, enable_hr=True, hr_scale=4, hr_upscaler="4x-TestRRDB")
    assert "Hires upscaler: 4x-TestRRDB" in redrawn["info"]["infotexts"][0]


def test_unload_and_reload_checkpoint(served):
    url = served["url"] + "/sdapi/v1"
    studio = served["studio"]
    assert requests.post(f"{url}/unload-checkpoint").status_code == 200
    assert studio._model is None  # the memory is given back
    assert requests.post(f"{url}/reload-checkpoint").status_code == 200
    assert studio._model is not None and studio._model.title == "demo"
    for route in ("refresh-embeddings", "refresh-vae", "refresh-checkpoints", "refresh-loras"):
        assert requests.post(f"{url}/{route}").status_code == 200, route
