"""Limits (422), unknown sampler (422 with the list), unknown checkpoint (404), a broken model (500 and the server
goes on), safe preview serving, and the Civitai routes against the fake Civitai server."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from loradeck.demo.paths import demo_lora_dir
from loradeck.server import create_app
from loradeck.settings import Limits
from tests.civitai.fake_server import FakeCivitai, lora_bytes


@pytest.fixture(scope="module")
def light(tmp_path_factory):
    """A TestClient over a studio that never needs to load a model (every request here is refused at the door)."""
    from loradeck.services.studio import Studio

    studio = Studio(home=tmp_path_factory.mktemp("limits"))
    with TestClient(create_app(studio, limits=Limits(max_body_mb=1))) as client:
        yield client


@pytest.mark.parametrize(
    "change, words",
    [
        ({"width": 4096}, "between 8 and 2048"),
        ({"height": 36}, "multiple of 8"),
        ({"steps": 151}, "between 1 and 150"),
        ({"batch_size": 17}, "between 1 and 16"),
        ({"prompt": "x" * 10_001}, "the limit is 10000"),
        ({"sampler_name": "Euler b"}, "valid samplers are"),
        ({"scheduler": "Wobbly"}, "valid schedule types are"),
    ],
)
def test_refused_with_422_and_a_sentence(light, change, words):
    response = light.post("/sdapi/v1/txt2img", json={"prompt": "a", "width": 32, "height": 32, **change})
    assert response.status_code == 422
    assert words in response.json()["detail"]
    if "sampler_name" in change:
        assert "Euler a" in response.json()["detail"]


def test_body_over_the_limit_is_refused(light):
    response = light.post("/sdapi/v1/png-info", content=json.dumps({"image": "A" * 1_100_000}))
    assert response.status_code == 422 and "1 MB" in response.json()["detail"]


def test_unknown_checkpoint_is_404(light):
    body = {"prompt": "a", "width": 32, "height": 32, "override_settings": {"sd_model_checkpoint": "nowhere"}}
    assert light.post("/sdapi/v1/txt2img", json=body).status_code == 404
    assert light.post("/sdapi/v1/options", json={"sd_model_checkpoint": "nowhere"}).status_code == 404


def test_bad_picture_is_422(light):
    response = light.post("/sdapi/v1/png-info", json={"image": "data:image/png;base64,bm90IGEgcGljdHVyZQ=="})
    assert response.status_code == 422 and "not a readable base64 picture" in response.json()["detail"]


def test_bad_inpainting_mask_or_fill_is_422(light):
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), "white").save(buf, format="PNG")
    picture = base64.b64encode(buf.getvalue()).decode()
    body = {"prompt": "a", "width": 32, "height": 32, "init_images": [picture], "mask": "bm90IGEgcGljdHVyZQ=="}
    response = light.post("/sdapi/v1/img2img", json=body)
    assert response.status_code == 422 and "Mask is not a readable" in response.json()["detail"]
    response = light.post("/sdapi/v1/img2img", json={**body, "mask": picture, "inpainting_fill": 7, "steps": 1})
    assert response.status_code == 422 and "inpainting_fill" in response.json()["detail"]


def test_broken_model_is_500_and_the_server_keeps_serving(served):
    broken = served["models_dir"] / "broken"
    (broken / "unet").mkdir(parents=True)
    (broken / "text_encoder").mkdir()
    (broken / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (broken / "unet" / "config.json").write_text("{}")
    (broken / "text_encoder" / "config.json").write_text("{}")
    api = f"{served['url']}/sdapi/v1"
    with httpx.Client(timeout=120) as http:
        assert http.post(f"{api}/refresh-checkpoints").status_code == 200
        response = http.post(f"{api}/options", json={"sd_model_checkpoint": "broken"})
        assert response.status_code == 500
        assert "broken" in response.json()["detail"]
        assert http.get(f"{api}/options").json()["sd_model_checkpoint"] == "demo"
        ok = http.post(f"{api}/txt2img", json={"prompt": "a", "width": 32, "height": 32, "steps": 2})
        assert ok.status_code == 200 and len(ok.json()["images"]) == 1


def test_previews_are_served_only_from_the_lora_folder(served, tmp_path):
    lora_dir = served["lora_dir"]
    (lora_dir / "red.preview.png").write_bytes(b"\x89PNG\r\n\x1a\n red preview")
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"\x89PNG\r\n\x1a\n secret")
    (lora_dir / "blue.preview.png").symlink_to(outside)
    base = f"{served['url']}/loradeck/v1"
    with httpx.Client(timeout=60) as http:
        http.post(f"{served['url']}/sdapi/v1/refresh-loras")
        entries = {e["name"]: e for e in http.get(f"{base}/loras").json()}
        assert entries["red"]["preview_url"] == "/loradeck/v1/loras/red/preview"
        assert entries["gold"]["family"] and entries["gold"]["hashes"]["sha256"]
        preview = http.get(f"{served['url']}{entries['red']['preview_url']}")
        assert preview.status_code == 200 and preview.content.endswith(b"red preview")
        assert http.get(f"{base}/loras/blue/preview").status_code == 404  # a link out of the folder
        # httpx folds the dot segments of the first (another route: 404); the encoded ones reach the route: 422
        assert http.get(f"{base}/loras/../../../../etc/passwd/preview").status_code == 404
        for sneaky in ("..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd"):
            assert http.get(f"{base}/loras/{sneaky}/preview").status_code == 422


def test_jobs_route_reports_counts(served):
    with httpx.Client(timeout=60) as http:
        body = http.get(f"{served['url']}/loradeck/v1/jobs").json()
    assert body["queue"]["completed"] >= 1
    assert {"id", "state", "progress", "kind"} <= set(body["jobs"][0])
    done = [j for j in body["jobs"] if j["kind"] == "txt2img" and j["state"] == "done"]
    assert done and all(j["progress"]["fraction"] == 1.0 for j in done)


def test_civitai_search_and_download_job(tmp_path):
    from loradeck.services.studio import Studio

    with FakeCivitai() as fake:
        content = lora_bytes(3)
        fake.add_model("Pixel Style", content, trained_words=["pixel art", "8bit"])
        studio = Studio(home=tmp_path, civitai_url=fake.base_url, civitai_token=fake.token)
        with TestClient(create_app(studio)) as client:
            found = client.get("/loradeck/v1/civitai/search", params={"query": "pixel", "types": "LORA"}).json()
            assert found["items"][0]["name"] == "Pixel Style"
            version = found["items"][0]["versions"][0]
            assert version["trained_words"] == ["pixel art", "8bit"]
            queued = client.post("/loradeck/v1/civitai/download", json={"ref": str(version["id"])})
            assert queued.status_code == 202
            deadline = time.monotonic() + 60
            while (job := client.get(queued.json()["status_url"]).json())["state"] in ("queued", "running"):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert job["state"] == "done", job
            assert job["progress"]["step"] == len(content) and job["progress"]["unit"] == "bytes"
            assert job["detail"]["verified"] is True
            loras = client.get("/loradeck/v1/loras").json()
            downloaded = [e for e in loras if not e["path"].startswith(str(demo_lora_dir()))]  # not the bundled ones
            assert [e["trigger_words"] for e in downloaded] == [["pixel art", "8bit"]]
            missing = client.post("/loradeck/v1/civitai/download", json={"ref": "999999"})
            deadline = time.monotonic() + 60
            while (job := client.get(missing.json()["status_url"]).json())["state"] in ("queued", "running"):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert job["state"] == "failed" and "999999" in job["error"]
