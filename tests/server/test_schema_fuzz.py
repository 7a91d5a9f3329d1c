"""schemathesis against the server's own OpenAPI (issue 18): every operation, with valid and invalid data, on a
server without auth and on one with ``--api-auth`` — no 5xx, no hang, every 4xx carries a sentence; afterwards a
normal request draws the same picture as before the fuzz.

Both servers run with tight limits (64 px sides, 4 steps, 2 × 2 pictures): the same checks run, but a fuzzed
"2048×2048, 150 steps, 100 batches" is refused in milliseconds instead of drawing for an hour. Civitai is a fake
server on 127.0.0.1 answering in the documented shapes.
"""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from loradeck.settings import Limits
from tests.civitai.fake_server import FakeCivitai, lora_bytes
from tests.server.helpers import b64_to_array, running_server, write_demo_lora

pytestmark = pytest.mark.slow

CREDS = {"fuzz": "s3cret"}
AUTH = "Basic " + base64.b64encode(b"fuzz:s3cret").decode()
LIMITS = Limits(max_side=64, max_steps=4, max_batch=2, max_batch_count=2, max_prompt_chars=2000, max_body_mb=4)
TIMEOUT = 60  # seconds for one call: a hang fails the test instead of blocking it
NORMAL = {"prompt": "a red circle <lora:red:0.8>", "seed": 5, "steps": 4, "width": 32, "height": 32,
          "sampler_name": "Euler a"}  # fmt: skip


def _serve(stack, tmp_path_factory, fake: FakeCivitai, auth: dict | None):
    from loradeck.server import create_app
    from loradeck.services.studio import Studio

    home = tmp_path_factory.mktemp("fuzzhome")
    write_demo_lora(home / "models" / "Lora" / "red.safetensors", seed=10)
    (home / "datasets" / "shapes").mkdir(parents=True)
    studio = Studio(home=home, civitai_url=fake.base_url, civitai_token=fake.token)
    app = create_app(studio, auth=auth, limits=LIMITS, preload=True)
    return app, stack.enter_context(running_server(app))


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    from contextlib import ExitStack

    with ExitStack() as stack:
        fake = stack.enter_context(FakeCivitai())
        fake.add_model("Fuzzed", lora_bytes(3))
        open_app, open_url = _serve(stack, tmp_path_factory, fake, None)
        locked_app, locked_url = _serve(stack, tmp_path_factory, fake, CREDS)
        before = {}
        for url, headers in ((open_url, {}), (locked_url, {"Authorization": AUTH})):
            with httpx.Client(base_url=url, headers=headers, timeout=TIMEOUT) as http:
                options = http.get("/sdapi/v1/options").json()
                answer = http.post("/sdapi/v1/txt2img", json=NORMAL)
                assert answer.status_code == 200, answer.text
                image = answer.json()["images"][0]
            before[url] = (options, b64_to_array(image))
        yield {"open": open_url, "locked": locked_url, "app": open_app, "before": before}


def _openapi() -> dict:
    """The schema the server publishes (it depends on the routes only, so a throwaway studio serves)."""
    import tempfile

    from loradeck.server import create_app
    from loradeck.services.studio import Studio

    with tempfile.TemporaryDirectory() as home:
        return create_app(Studio(home=Path(home))).openapi()


def _within_limits(spec: dict) -> dict:
    """The schema with the server's limits written into the generation requests, so that schemathesis' valid cases
    are mostly drawn (not refused by the limits) and the sampling, hires, img2img and inpainting paths are fuzzed
    too. Images are small valid PNGs, masks included; prompts may carry a LoRA tag of a LoRA that exists."""
    import copy
    import io

    from PIL import Image

    def png(colour) -> str:
        buf = io.BytesIO()
        Image.new("RGB", (24, 40), colour).save(buf, "PNG")
        return base64.b64encode(buf.getvalue()).decode()

    spec = copy.deepcopy(spec)
    images = [png("red"), png("white"), "data:image/png;base64," + png("black")]
    narrowed = {
        "prompt": {"type": "string", "pattern": r"^[a-z ,()\[\]:.0-9]{0,40}( <lora:red:[0-9.-]{1,4}>)?$"},
        "width": {"type": "integer", "enum": [8, 16, 32, 40, 64]},
        "height": {"type": "integer", "enum": [8, 16, 32, 40, 64]},
        "steps": {"type": "integer", "minimum": 1, "maximum": LIMITS.max_steps},
        "batch_size": {"type": "integer", "minimum": 1, "maximum": LIMITS.max_batch},
        "n_iter": {"type": "integer", "minimum": 1, "maximum": LIMITS.max_batch_count},
        "hr_scale": {"type": "number", "minimum": 0.5, "maximum": 2},
        "hr_resize_x": {"type": "integer", "enum": [0, 16, 64]},
        "hr_resize_y": {"type": "integer", "enum": [0, 16, 64]},
        "hr_second_pass_steps": {"type": "integer", "minimum": 0, "maximum": LIMITS.max_steps},
        "seed": {"type": "integer", "minimum": -1, "maximum": 2**32},
        "subseed": {"type": "integer", "minimum": -1, "maximum": 2**32},
        "cfg_scale": {"type": "number", "minimum": 0, "maximum": 30},
        "init_images": {"type": "array", "items": {"enum": images}, "minItems": 1, "maxItems": 2},
        "mask": {"anyOf": [{"enum": images}, {"type": "null"}]},
        "sampler_name": {"enum": ["Euler a", "Euler", "DPM++ 2M", "DPM++ SDE", "DDIM", "LCM", "UniPC", None]},
        "scheduler": {"enum": ["Automatic", "Karras", "Exponential", "Beta", None]},
        "hr_upscaler": {"enum": ["Latent", "Lanczos", "Nearest", "None", None]},
    }
    for name in ("Txt2ImgRequest", "Img2ImgRequest"):
        props = spec["components"]["schemas"][name]["properties"]
        for key, value in narrowed.items():
            if key in props:
                props[key] = value
        for key in ("firstphase_width", "firstphase_height", "seed_resize_from_h", "seed_resize_from_w"):
            props.pop(key, None)  # A1111 leftovers loradeck ignores; their values only make refusals
    return spec


# Built at import: schemathesis' lazy fixture loader does not work with pytest 9 (it sets Item._nodeid).
SPEC = _openapi()
schema = schemathesis.openapi.from_dict(SPEC)
drawing = schemathesis.openapi.from_dict(_within_limits(SPEC)).include(path_regex=r"^/sdapi/v1/(txt2img|img2img)$")
drawing.config.generation.update(modes=[schemathesis.GenerationMode.POSITIVE])
DRAWN: dict[str, int] = {}


def _check(response, case) -> None:
    where = f"{case.method} {case.formatted_path}"
    assert response.status_code < 500, f"{where} → {response.status_code}: {response.text[:500]}"
    if 400 <= response.status_code < 500 and response.status_code != 401:
        body = response.json()
        sentence = body.get("detail") if isinstance(body, dict) else None
        assert isinstance(sentence, str) and len(sentence) > 8, f"{where} → {response.status_code} without a sentence"


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_errors_without_auth(case, servers):
    _check(case.call(base_url=servers["open"], timeout=TIMEOUT), case)


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_errors_with_auth(case, servers):
    anonymous = case.call(base_url=servers["locked"], timeout=TIMEOUT)
    assert anonymous.status_code == 401, f"{case.method} {case.formatted_path} answered without credentials"
    _check(case.call(base_url=servers["locked"], headers={"Authorization": AUTH}, timeout=TIMEOUT), case)


@drawing.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_valid_generation_requests_draw_or_get_a_sentence(case, servers):
    response = case.call(base_url=servers["open"], timeout=TIMEOUT)
    _check(response, case)
    if response.status_code == 200:
        wanted = case.body.get("send_images", True)
        assert bool(response.json()["images"]) == wanted, case.body
        DRAWN[case.path] = DRAWN.get(case.path, 0) + 1


def test_the_fuzz_really_drew(servers):
    assert DRAWN.get("/sdapi/v1/txt2img", 0) >= 10 and DRAWN.get("/sdapi/v1/img2img", 0) >= 10, DRAWN


def test_after_the_fuzz_a_normal_request_draws_the_same_picture(servers):
    for url, headers in ((servers["open"], {}), (servers["locked"], {"Authorization": AUTH})):
        options, picture = servers["before"][url]
        with httpx.Client(base_url=url, headers=headers, timeout=TIMEOUT) as http:
            assert http.post("/sdapi/v1/options", json=options).status_code == 200  # undo what the fuzz set
            answer = http.post("/sdapi/v1/txt2img", json=NORMAL)
        assert answer.status_code == 200, answer.text
        assert (b64_to_array(answer.json()["images"][0]) == picture).all()
