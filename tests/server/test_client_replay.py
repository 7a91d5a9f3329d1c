"""A replay of the calls three real clients make: webuiapi (the PyPI client, unchanged), Open WebUI's AUTOMATIC1111
image backend and SillyTavern's "auto" Stable Diffusion source (their request bodies, as they send them) — listing,
options get/set, txt2img with hires, img2img with a mask, extras, progress, interrupt — with and without
``--api-auth``."""

from __future__ import annotations

import base64
import io
import json
import shutil
import threading
import time
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests
import webuiapi
from PIL import Image, ImageDraw

from tests.server.helpers import running_server

AUTH = ("deck", "s3cret")


@pytest.fixture(scope="module", params=["open", "auth"])
def server(request, served):
    """The session server (no auth), or a second app over the same studio behind HTTP Basic."""
    if request.param == "open":
        yield {"url": served["url"], "auth": None, "app": served["app"]}
        return
    from loradeck.server import create_app

    app = create_app(served["studio"], auth={AUTH[0]: AUTH[1]})
    with running_server(app) as url:
        assert requests.get(f"{url}/sdapi/v1/options").status_code == 401  # nothing without credentials
        yield {"url": url, "auth": AUTH, "app": app}


def b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def scene() -> tuple[Image.Image, Image.Image]:
    init = Image.new("RGB", (32, 32), (200, 40, 40))
    ImageDraw.Draw(init).ellipse((8, 8, 24, 24), fill=(30, 60, 220))
    mask = Image.new("L", (32, 32), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 13, 31), fill=255)
    return init, mask


# ---------------------------------------------------------------------------------------------------- webuiapi
def test_webuiapi_calls(server):
    url = urlsplit(server["url"])
    api = webuiapi.WebUIApi(host=url.hostname, port=url.port, sampler="Euler a", steps=3)
    if server["auth"]:
        api.set_auth(*server["auth"])
    assert "demo" in api.util_get_model_names()
    assert api.util_get_current_model() == "demo"
    assert "Lanczos" in [u["name"] for u in api.get_upscalers()]
    for call in (api.get_sd_vae, api.get_hypernetworks, api.get_face_restorers, api.get_realesrgan_models):
        assert call() == []
    assert api.get_embeddings() == {"loaded": {}, "skipped": {}}
    assert api.get_cmd_flags()["api_auth"] is None
    assert "Latent" in [m["name"] for m in api.get_latent_upscale_modes()]
    options = api.get_options()
    api.set_options({"send_seed": not options["send_seed"]})
    assert api.get_options()["send_seed"] is (not options["send_seed"])
    api.set_options({"send_seed": options["send_seed"]})

    hires = api.txt2img(prompt="a red circle", seed=5, width=32, height=32, enable_hr=True, hr_scale=2,
                        hr_upscaler="Lanczos", denoising_strength=0.5, hr_second_pass_steps=2)  # fmt: skip
    assert hires.image.size == (64, 64) and "Hires upscaler: Lanczos" in hires.info["infotexts"][0]
    init, mask = scene()
    inpainted = api.img2img(images=[init], mask_image=mask, prompt="a green square", seed=5, width=32, height=32,
                            denoising_strength=0.9, mask_blur=2, inpainting_fill=1, inpaint_full_res=False)  # fmt: skip
    out, src = np.asarray(inpainted.image.convert("RGB")).astype(int), np.asarray(init).astype(int)
    assert np.array_equal(out[:, 20:], src[:, 20:]) and np.abs(out[:, :10] - src[:, :10]).mean() > 10
    upscaled = api.extra_single_image(image=init, upscaler_1="Lanczos", upscaling_resize=2)
    assert upscaled.image.size == (64, 64)
    batch = api.extra_batch_images(images=[init, init], upscaler_1="Nearest", upscaling_resize=3)
    assert [i.size for i in batch.images] == [(96, 96), (96, 96)]
    info = api.png_info(hires.image)
    assert info.info == hires.info["infotexts"][0]
    assert api.get_progress()["state"]["job_count"] >= 0


# ---------------------------------------------------------------------------------------------------- Open WebUI
def test_open_webui_calls(server):
    url, auth = server["url"], server["auth"]
    headers = {}
    if auth:  # Open WebUI sends AUTOMATIC1111_API_AUTH as a prebuilt Basic header
        headers["authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    options = requests.get(f"{url}/sdapi/v1/options", headers=headers).json()
    models = requests.get(f"{url}/sdapi/v1/sd-models", headers=headers).json()
    assert options["sd_model_checkpoint"] in [m["title"] for m in models]
    set_model = requests.post(f"{url}/sdapi/v1/options", json={"sd_model_checkpoint": "demo"}, headers=headers)
    assert set_model.status_code == 200
    body = {"prompt": "a red circle", "batch_size": 1, "width": 64, "height": 64, "steps": 4, "cfg_scale": 7,
            "sampler_name": "Euler a", "scheduler": "Automatic", "negative_prompt": ""}  # fmt: skip
    answer = requests.post(f"{url}/sdapi/v1/txt2img", json=body, headers=headers)
    assert answer.status_code == 200
    image = Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0])))
    assert image.size == (64, 64)


# ---------------------------------------------------------------------------------------------------- SillyTavern
def test_sillytavern_calls(server, served):
    url, auth = server["url"], server["auth"]
    session = requests.Session()
    session.auth = auth
    assert session.get(f"{url}/sdapi/v1/options").status_code == 200  # "auto/ping"
    assert session.get(f"{url}/sdapi/v1/samplers").json()
    assert session.get(f"{url}/sdapi/v1/schedulers").json()
    upscalers = [u["name"] for u in session.get(f"{url}/sdapi/v1/upscalers").json()]
    latent = [m["name"] for m in session.get(f"{url}/sdapi/v1/latent-upscale-modes").json()]
    assert "Lanczos" in upscalers and "Latent" in latent
    assert session.get(f"{url}/sdapi/v1/sd-vae").json() == []
    assert session.post(f"{url}/sdapi/v1/options", json={"sd_model_checkpoint": "demo"}).status_code == 200
    body = {
        "prompt": "a red circle", "negative_prompt": "", "sampler_name": "DPM++ 2M", "scheduler": "Karras",
        "steps": 4, "cfg_scale": 7, "width": 32, "height": 32, "restore_faces": False, "enable_hr": True,
        "hr_upscaler": "Latent", "hr_scale": 2, "hr_additional_modules": [], "denoising_strength": 0.6,
        "hr_second_pass_steps": 2, "seed": 9, "override_settings": {"CLIP_stop_at_last_layers": 1},
        "override_settings_restore_afterwards": True, "clip_skip": 1, "save_images": True, "send_images": True,
        "do_not_save_grid": False, "do_not_save_samples": False,
    }  # fmt: skip
    answer = session.post(f"{url}/sdapi/v1/txt2img", json=body)
    assert answer.status_code == 200, answer.text
    image = Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0])))
    assert image.size == (64, 64)
    outputs = served["studio"].settings.outputs_path  # SillyTavern asks for save_images: the picture was saved
    saved = sorted(outputs.rglob("*.png"))
    assert saved and Image.open(saved[-1]).text["parameters"] == json.loads(answer.json()["info"])["infotexts"][0]
    shutil.rmtree(outputs)  # other tests check that save_images=false writes nothing
    init, _ = scene()
    edit = {"init_images": [b64(init)], "prompt": "a green circle", "denoising_strength": 0.5, "steps": 4,
            "width": 32, "height": 32, "seed": 9}  # fmt: skip
    assert session.post(f"{url}/sdapi/v1/img2img", json=edit).status_code == 200


# ---------------------------------------------------------------------------------------------------- progress
def test_progress_and_interrupt_stop_within_a_step(server):
    url, auth = server["url"], server["auth"]
    queue = server["app"].state.loradeck.queue
    answer: dict = {}

    def long_job():
        body = {"prompt": "a red circle", "width": 64, "height": 64, "steps": 150, "seed": 1}
        answer["response"] = requests.post(f"{url}/sdapi/v1/txt2img", json=body, auth=auth)

    thread = threading.Thread(target=long_job)
    thread.start()
    step = 0
    for _ in range(3000):  # until sampling has started (bounded by iterations, not by a timing)
        state = requests.get(f"{url}/sdapi/v1/progress?skip_current_image=true", auth=auth).json()["state"]
        step = state["sampling_step"]
        if step >= 1:
            break
        time.sleep(0.02)
    assert step >= 1
    job = queue.running
    assert requests.post(f"{url}/sdapi/v1/interrupt", auth=auth).status_code == 200
    thread.join(120)
    assert not thread.is_alive()
    info = answer["response"].json()
    assert answer["response"].status_code == 200 and info["images"] == []
    assert (
        job is not None and job.progress.step <= step + 2 < 150
    )  # stopped within a step of the one seen (a race of one)
