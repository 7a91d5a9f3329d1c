"""`/loradeck/v1/tools/…`: LoRA tools as queued jobs whose output is in the library when they are done."""

from __future__ import annotations

import time

import httpx


def _wait(client: httpx.Client, status_url: str) -> dict:
    deadline = time.monotonic() + 300
    while (job := client.get(status_url).json())["state"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return job


def test_merge_and_resize_jobs_land_in_the_library(served):
    body = {"loras": [{"name": "red", "weight": 0.7}, {"name": "shiny", "weight": 0.3}], "name": "redgold"}
    with httpx.Client(base_url=served["url"], timeout=30) as client:
        queued = client.post("/loradeck/v1/tools/merge", json=body)
        assert queued.status_code == 202, queued.text
        job = _wait(client, queued.json()["status_url"])
        assert job["state"] == "done", job["error"]
        assert job["kind"] == "tool" and job["detail"]["path"].endswith("redgold.safetensors")
        assert job["progress"]["unit"] == "modules" and job["progress"]["steps"] == job["detail"]["modules"]
        entry = client.get("/loradeck/v1/loras/redgold")
        assert entry.status_code == 200 and entry.json()["family"] == "demo"

        resized = client.post("/loradeck/v1/tools/resize", json={"lora": "redgold", "dynamic": "sv_fro", "param": 0.9})
        job = _wait(client, resized.json()["status_url"])
        assert job["state"] == "done", job["error"]
        assert 0.9 <= job["detail"]["retained"] <= 1.0
        assert all(row["retained"] >= 0.9 - 1e-6 for row in job["detail"]["per_module"])
        assert client.get("/loradeck/v1/loras/redgold-sv_fro-0.9").status_code == 200


def test_bad_tool_requests_are_4xx(served):
    with httpx.Client(base_url=served["url"], timeout=30) as client:
        missing = client.post("/loradeck/v1/tools/merge", json={"loras": [{"name": "nosuch"}]})
        assert missing.status_code == 404 and "nosuch" in missing.json()["detail"]
        escape = client.post("/loradeck/v1/tools/convert", json={"lora": "red", "name": "../escape"})
        assert escape.status_code == 422
        method = client.post("/loradeck/v1/tools/resize", json={"lora": "red", "dynamic": "svd", "param": 1})
        assert method.status_code == 422
        # a request the tool itself refuses ends as a failed job with the sentence, the server keeps serving
        queued = client.post("/loradeck/v1/tools/resize", json={"lora": "red"})
        job = _wait(client, queued.json()["status_url"])
        assert job["state"] == "failed" and "--rank" in job["error"]
        assert client.get("/loradeck/v1/loras").status_code == 200
