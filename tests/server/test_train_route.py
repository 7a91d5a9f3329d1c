"""`POST /loradeck/v1/train`: a training job with progress; the LoRA is in the library when it is done."""

from __future__ import annotations

import time

import httpx

from tests.train.conftest import draw_pictures


def _wait(client: httpx.Client, status_url: str, seen: list) -> dict:
    deadline = time.monotonic() + 300
    while (job := client.get(status_url).json())["state"] in ("queued", "running"):
        seen.append(job)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return job


def test_train_job_reports_progress_and_lands_in_the_library(served):
    data = served["home"] / "datasets" / "apidata"  # over the API, training data comes from <home>/datasets
    draw_pictures(data / "2_shapes", 4)
    body = {"data": "apidata", "name": "apitrained", "trigger": "apistyle", "rank": 2, "alpha": 1, "lr": 1e-3,
            "steps": 3, "batch_size": 2}  # fmt: skip
    with httpx.Client(base_url=served["url"], timeout=30) as client:
        queued = client.post("/loradeck/v1/train", json=body)
        assert queued.status_code == 202
        seen: list = []
        job = _wait(client, queued.json()["status_url"], seen)
        assert job["state"] == "done", job
        assert job["detail"]["steps"] == 3 and job["detail"]["lora"].endswith("apitrained.safetensors")
        entry = client.get("/loradeck/v1/loras/apitrained").json()
        assert entry["trigger_words"] == ["apistyle"] and entry["family"] == "demo"
        bad = client.post("/loradeck/v1/train", json=body | {"name": "../escape"})
        assert bad.status_code == 422
