"""The `webuiapi` PyPI client against a real uvicorn server: what A1111 apps do, unchanged."""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from urllib.parse import urlsplit

import numpy as np
import pytest
import webuiapi
from PIL import Image

from loradeck.prompt.infotext import format_infotext
from loradeck.prompt.pnginfo import png_info
from loradeck.vocab import GenerationRequest
from tests.server.helpers import write_demo_lora

PROMPT = "a red circle on a blue background"
SMALL = dict(width=32, height=32, steps=4)


def client(served) -> webuiapi.WebUIApi:
    url = urlsplit(served["url"])
    return webuiapi.WebUIApi(host=url.hostname, port=url.port, sampler="Euler a", steps=4)


def autov3(path) -> str:
    """AutoV3 (A1111's LoRA hash), computed here without loradeck: sha256 of the bytes after the header, 12 hex."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return hashlib.sha256(data[8 + n :]).hexdigest()[:12]


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def test_txt2img_with_a_lora_tag(served):
    api = client(served)
    plain = api.txt2img(prompt=PROMPT, seed=3, **SMALL)
    styled = api.txt2img(prompt=f"{PROMPT} <lora:red:1>", seed=3, **SMALL)
    assert styled.image.size == (32, 32)
    assert not np.array_equal(pixels(plain.image), pixels(styled.image))  # the LoRA was merged
    infotext = styled.info["infotexts"][0]
    assert f'Lora hashes: "red: {autov3(served["lora_dir"] / "red.safetensors")}"' in infotext
    assert styled.image.info["parameters"] == infotext  # the PNG carries its infotext
    assert styled.info["all_seeds"] == [3] and styled.info["sampler_name"] == "Euler a"
    assert styled.info["sd_model_name"] == "demo"
    # The alias from ss_output_name names the same file as its stem: same pixels.
    by_alias = api.txt2img(prompt=f"{PROMPT} <lora:shiny:1>", seed=3, **SMALL)
    by_stem = api.txt2img(prompt=f"{PROMPT} <lora:gold:1>", seed=3, **SMALL)
    assert np.array_equal(pixels(by_alias.image), pixels(by_stem.image))
    # save_images defaults to false: nothing was written.
    outputs = served["studio"].settings.outputs_path
    assert not outputs.exists() or not any(p.is_file() for p in outputs.rglob("*"))


def test_legacy_sampler_name_and_same_pixels_as_the_studio(served):
    api = client(served)
    result = api.txt2img(prompt=f"{PROMPT} <lora:blue:0.7>", seed=11, sampler_name="DPM++ 2M Karras", **SMALL)
    assert "Sampler: DPM++ 2M, Schedule type: Karras" in result.info["infotexts"][0]
    direct = served["studio"].generate(
        GenerationRequest(f"{PROMPT} <lora:blue:0.7>", seed=11, sampler="DPM++ 2M Karras", save=False, **SMALL)
    )
    assert np.array_equal(pixels(result.image), pixels(direct.images[0].image))


def test_img2img(served):
    api = client(served)
    init = Image.new("RGB", (48, 40), (200, 30, 30))
    result = api.img2img(images=[init], prompt=PROMPT, denoising_strength=0.5, seed=5, **SMALL)
    assert result.image.size == (32, 32)
    assert "Denoising strength: 0.5" in result.info["infotexts"][0]
    assert result.parameters["init_images"] is None  # not echoed, as A1111
    direct = served["studio"].generate(
        GenerationRequest(PROMPT, seed=5, init_image=init.resize((32, 32)), denoising_strength=0.5, save=False, **SMALL)
    )
    assert np.array_equal(pixels(result.image), pixels(direct.images[0].image))
    stronger = api.img2img(images=[init], prompt=PROMPT, denoising_strength=0.9, seed=5, **SMALL)
    assert not np.array_equal(pixels(result.image), pixels(stronger.image))


def test_get_loras_and_refresh_loras(served):
    api = client(served)
    loras = {item["name"]: item for item in api.get_loras()}
    assert {"red", "blue", "green", "gold"} <= set(loras)
    assert loras["gold"]["alias"] == "shiny"
    assert loras["red"]["path"] == str(served["lora_dir"] / "red.safetensors")
    assert loras["red"]["metadata"]["ss_network_dim"] == "4"
    write_demo_lora(served["lora_dir"] / "late.safetensors", seed=99)
    response = api.session.post(f"{api.baseurl}/refresh-loras")
    assert response.status_code == 200 and response.json() is None
    assert "late" in {item["name"] for item in api.get_loras()}


def test_switch_checkpoint_through_options(served):
    api = client(served)
    assert {"demo", "demo-variant"} <= set(api.util_get_model_names())
    base = api.txt2img(prompt=PROMPT, seed=7, **SMALL)
    try:
        api.util_set_model("demo-variant")
        assert api.util_get_current_model() == "demo-variant"
        variant = api.txt2img(prompt=PROMPT, seed=7, **SMALL)
        assert variant.info["sd_model_name"] == "demo-variant"
        assert not np.array_equal(pixels(base.image), pixels(variant.image))
    finally:
        api.set_options({"sd_model_checkpoint": "demo"})
    again = api.txt2img(prompt=PROMPT, seed=7, **SMALL)
    assert np.array_equal(pixels(base.image), pixels(again.image))
    missing = api.session.post(f"{api.baseurl}/options", json={"sd_model_checkpoint": "no-such-model"})
    assert missing.status_code == 404 and "no-such-model" in missing.json()["detail"]


def test_png_info_parses_and_pastes_lora_hashes_back(served):
    api = client(served)
    made = api.txt2img(prompt=f"{PROMPT} <lora:green:0.8>", seed=9, **SMALL)
    read = api.png_info(made.image)
    assert read.info == made.info["infotexts"][0]
    assert read.parameters["Seed"] == "9" and read.parameters["Size-1"] == "32"
    # A picture from someone whose copy of "green" was called "oldname": the hash finds our file.
    h = autov3(served["lora_dir"] / "green.safetensors")
    text = format_infotext(f"{PROMPT} <lora:oldname:0.8>", "", {"Steps": 4, "Seed": 1, "Lora hashes": f"oldname: {h}"})
    picture = Image.new("RGB", (8, 8))
    picture.info["parameters"] = text  # webuiapi copies text chunks into the PNG it sends
    pasted = api.png_info(picture)
    assert "<lora:green:0.8>" in pasted.parameters["Prompt"]
    assert png_info(text)  # our writer accepts what we built


def test_interrupt_during_a_long_job(served):
    api = client(served)
    outcome = {}
    worker = threading.Thread(
        target=lambda: outcome.setdefault(
            "r", api.txt2img(prompt=PROMPT, seed=1, n_iter=4, width=32, height=32, steps=150)
        )
    )
    worker.start()
    deadline = time.monotonic() + 60
    while api.get_progress()["state"]["sampling_step"] < 2:
        assert time.monotonic() < deadline, "the long job never started"
        time.sleep(0.05)
    progress = api.get_progress()
    assert progress["state"]["sampling_steps"] == 150 and 0 < progress["progress"] < 1
    assert progress["state"]["job_count"] == 4
    api.interrupt()
    worker.join(60)
    assert not worker.is_alive()
    result = outcome["r"]
    assert result.info["interrupted"] is True
    assert len(result.images) < 4  # it stopped before the four batches were done
    assert api.get_progress()["state"]["job_count"] == 0  # idle again


@pytest.mark.parametrize("route", ["sd-models", "samplers", "schedulers", "memory", "options"])
def test_listing_routes_answer(served, route):
    api = client(served)
    response = api.session.get(f"{api.baseurl}/{route}")
    assert response.status_code == 200
    body = response.json()
    if route == "samplers":
        assert {"Euler a", "DPM++ 2M"} <= {s["name"] for s in body}
        assert next(s for s in body if s["name"] == "DPM++ 2M")["options"] == {"scheduler": "karras"}
    if route == "schedulers":
        assert next(s for s in body if s["label"] == "Karras")["default_rho"] == 7.0
    if route == "memory":
        assert body["ram"]["total"] >= body["ram"]["used"] > 0


def test_prompt_styles_listed_and_applied(served):
    styles = served["home"] / "styles.csv"
    styles.write_text('name,prompt,negative_prompt\nframed,"{prompt}, on a blue background",blurry\n')
    try:
        api = client(served)
        assert api.get_prompt_styles() == [
            {"name": "framed", "prompt": "{prompt}, on a blue background", "negative_prompt": "blurry"}
        ]
        result = api.txt2img(prompt="a red circle", styles=["framed"], seed=4, **SMALL)
        assert result.info["infotexts"][0].startswith("a red circle, on a blue background\nNegative prompt: blurry")
    finally:
        styles.unlink()
