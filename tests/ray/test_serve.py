"""loradeck on a local Ray Serve cluster (2 replicas, CPU only, the demo model), against a single-process server: the
same routes, the same pictures, stack affinity, auth on every route, jobs across replicas, a replica killed mid-run.

The cluster is started and stopped by this module (tests/ray/conftest.py); the tests share it and run in order.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import httpx
import numpy as np
import pytest

pytest.importorskip("ray.serve", reason="the ray extra is not installed (pip install 'loradeck[ray]')")

from tests.ray.conftest import AUTH  # noqa: E402
from tests.server.helpers import b64_to_array  # noqa: E402

pytestmark = pytest.mark.slow

PROMPT = "a red circle on a blue background"
SMALL = {"steps": 2, "width": 32, "height": 32, "sampler_name": "Euler"}
STACKS = ["<lora:inky:0.8>", "<lora:stripy:0.6> <lora:dotty:0.4>", "<lora:dotty:0.9>"]


def body(stack: str, seed: int, **kw) -> dict:
    return {"prompt": f"{PROMPT} {stack}", "seed": seed, **SMALL, **kw}


def first_picture(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text[:300]
    return b64_to_array(response.json()["images"][0])


def infotexts(response: httpx.Response) -> list[str]:
    return json.loads(response.json()["info"])["infotexts"]


def replicas(cluster) -> dict[str, dict]:
    return {r["replica"]: r for r in cluster["client"].get("/loradeck/v1/cluster").json()["replicas"]}


def wait_for_sampling(client: httpx.Client, min_step: int = 1, timeout: float = 120) -> httpx.Response:
    """Poll A1111's progress until a generation is sampling (step ≥ min_step)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = client.get("/sdapi/v1/progress", params={"skip_current_image": "true"})
        state = progress.json()["state"]
        if state["job"].startswith("txt2img") and state["sampling_step"] >= min_step:
            return progress
        time.sleep(0.05)
    raise AssertionError("the generation never started sampling")


def in_background(fn):
    out: dict = {}
    thread = threading.Thread(target=lambda: out.setdefault("result", fn()), daemon=True)
    thread.start()
    return thread, out


def test_a_stack_stays_on_its_replica_and_draws_the_single_servers_pixels(cluster, single):
    seen: dict[str, set[str]] = {stack: set() for stack in STACKS[:2]}
    for i in range(6):
        stack = STACKS[i % 2]
        answer = cluster["client"].post("/sdapi/v1/txt2img", json=body(stack, seed=i))
        reference = single["client"].post("/sdapi/v1/txt2img", json=body(stack, seed=i))
        assert np.array_equal(first_picture(answer), first_picture(reference))
        assert infotexts(answer) == infotexts(reference)
        seen[stack].add(answer.headers["x-loradeck-replica"])
    assert all(len(ids) == 1 for ids in seen.values()), seen  # the same (checkpoint, stack): the same replica
    assert seen[STACKS[0]] != seen[STACKS[1]]  # two new stacks on two idle replicas: one each
    held = replicas(cluster)
    assert set().union(*seen.values()) == set(held)
    assert sum(r["stack_switches"] for r in held.values()) == 0  # no replica ever merged another stack


def test_webuiapi_works_unchanged_against_the_ingress(cluster, single):
    import webuiapi
    from PIL import Image

    api = webuiapi.WebUIApi(host="127.0.0.1", port=cluster["port"], sampler="Euler a", steps=4)
    api.set_auth(*AUTH)
    plain = webuiapi.WebUIApi(host="127.0.0.1", port=int(single["url"].rsplit(":", 1)[1]), sampler="Euler a", steps=4)
    size = {"width": 32, "height": 32}
    got = api.txt2img(prompt=f"{PROMPT} <lora:stripy:1>", seed=3, **size)
    want = plain.txt2img(prompt=f"{PROMPT} <lora:stripy:1>", seed=3, **size)
    assert np.array_equal(np.asarray(got.image), np.asarray(want.image))
    assert got.info["infotexts"] == want.info["infotexts"] and got.image.info["parameters"] == got.info["infotexts"][0]
    init = Image.new("RGB", (48, 40), (200, 30, 30))
    got = api.img2img(images=[init], prompt=PROMPT, denoising_strength=0.5, seed=5, **size)
    want = plain.img2img(images=[init], prompt=PROMPT, denoising_strength=0.5, seed=5, **size)
    assert np.array_equal(np.asarray(got.image), np.asarray(want.image))
    assert {"demo", "demo-variant"} <= set(api.util_get_model_names())
    assert {"inky", "stripy", "dotty"} <= {item["name"] for item in api.get_loras()}
    refreshed = api.session.post(f"{api.baseurl}/refresh-loras")  # a broadcast: every replica rescans its folder
    assert refreshed.status_code == 200 and set(refreshed.headers["x-loradeck-replicas"].split(",")) == set(
        replicas(cluster)
    )
    try:  # the checkpoint option goes to every replica (a broadcast); both draw with it
        api.util_set_model("demo-variant")
        plain.util_set_model("demo-variant")
        assert api.util_get_current_model() == "demo-variant"
        assert {r["checkpoint"] for r in replicas(cluster).values()} == {"demo-variant"}
        for stack in STACKS[:2]:
            got = api.txt2img(prompt=f"{PROMPT} {stack}", seed=7, **size)
            want = plain.txt2img(prompt=f"{PROMPT} {stack}", seed=7, **size)
            assert got.info["sd_model_name"] == "demo-variant"
            assert np.array_equal(np.asarray(got.image), np.asarray(want.image))
    finally:
        api.set_options({"sd_model_checkpoint": "demo"})
        plain.set_options({"sd_model_checkpoint": "demo"})
    assert {r["checkpoint"] for r in replicas(cluster).values()} == {"demo"}
    missing = api.session.post(f"{api.baseurl}/options", json={"sd_model_checkpoint": "no-such-model"})
    assert missing.status_code == 404 and "no-such-model" in missing.json()["detail"]


def test_api_auth_covers_every_route(cluster, single):
    """Every route of the single server's app (and paths it does not have) answers 401 through the ingress without
    the right credentials."""
    from tests.server.test_auth import _requests

    paths = _requests(single["app"])  # what tests/server checks on the single server, the same way
    assert len(paths) > 40 and ("POST", "/sdapi/v1/txt2img") in paths and ("GET", "/docs") in paths
    paths += [("GET", "/"), ("GET", "/no/such/route"), ("GET", "/loradeck/v1/cluster")]
    with httpx.Client(base_url=cluster["url"], timeout=60) as anonymous:
        for method, path in paths:
            for auth in (None, (AUTH[0], "wrong"), ("nobody", AUTH[1])):
                answer = anonymous.request(method, path, auth=auth, json={} if method == "POST" else None)
                assert answer.status_code == 401, (method, path, answer.status_code)
                assert answer.headers["www-authenticate"].startswith("Basic")
    assert cluster["client"].get("/sdapi/v1/sd-models").status_code == 200


def test_progress_interrupt_and_jobs_follow_the_job_across_replicas(cluster):
    client = cluster["client"]
    thread, out = in_background(
        lambda: client.post("/sdapi/v1/txt2img", json=body(STACKS[2], seed=21, steps=40, n_iter=3))
    )
    progress = wait_for_sampling(client)
    where = progress.headers["x-loradeck-replica"]
    job_id = progress.json()["state"]["job"].split()[1]
    one = client.get(f"/loradeck/v1/jobs/{job_id}")
    assert one.status_code == 200 and one.json()["state"] == "running" and one.headers["x-loradeck-replica"] == where
    every = client.get("/loradeck/v1/jobs").json()
    assert {j["id"]: j["replica"] for j in every["jobs"]}[job_id] == where
    assert set(every["queue"]["replicas"]) == set(replicas(cluster)) and job_id in every["queue"]["running_all"]
    stopped = client.post("/sdapi/v1/interrupt")
    assert stopped.status_code == 200 and stopped.headers["x-loradeck-replica"] == where
    thread.join(120)
    answer = out["result"]
    assert answer.status_code == 200 and answer.headers["x-loradeck-replica"] == where
    assert json.loads(answer.json()["info"])["interrupted"] is True
    assert client.get(f"/loradeck/v1/jobs/{job_id}").json()["state"] == "cancelled"  # A1111: interrupted = ended


def test_training_runs_on_a_replica_and_its_lora_is_usable_through_the_ingress(cluster):
    from tests.train.conftest import draw_pictures

    client = cluster["client"]
    draw_pictures(cluster["home"] / "datasets" / "raydata" / "2_shapes", 4)
    train = {"data": "raydata", "name": "raytrained", "rank": 2, "alpha": 1, "lr": 1e-3, "steps": 3, "batch_size": 2}
    queued = client.post("/loradeck/v1/train", json=train)
    assert queued.status_code == 202, queued.text
    where = queued.headers["x-loradeck-replica"]
    assert where in replicas(cluster)  # a replica ran it: the ingress runs no job
    deadline = time.monotonic() + 180
    while (job := client.get(queued.json()["status_url"])).json()["state"] in ("queued", "running"):
        assert job.headers["x-loradeck-replica"] == where and time.monotonic() < deadline
        time.sleep(0.1)
    assert job.json()["state"] == "done", job.json()
    answer = client.post("/sdapi/v1/txt2img", json=body("<lora:raytrained:1>", seed=2))
    info = json.loads(answer.json()["info"])
    assert "raytrained: " in info["extra_generation_params"]["Lora hashes"]  # found and merged on that replica
    assert not [w for w in info["warnings"] if "not found" in w]


def test_a_replica_killed_mid_run_costs_one_retry_and_nothing_hangs(cluster, single):
    client = cluster["client"]
    long = body(STACKS[0], seed=5, steps=30, n_iter=3)  # long enough to be killed mid-run on a fast machine
    thread, out = in_background(lambda: client.post("/sdapi/v1/txt2img", json=long))
    progress = wait_for_sampling(client, min_step=2)
    victim = progress.headers["x-loradeck-replica"]
    job_id = progress.json()["state"]["job"].split()[1]
    assert client.get(f"/loradeck/v1/jobs/{job_id}").json()["state"] == "running"
    os.kill(replicas(cluster)[victim]["pid"], signal.SIGKILL)
    thread.join(180)
    assert not thread.is_alive()  # answered, not hung
    answer = out["result"]
    if answer.status_code == 200:  # retried once on the other replica: the same body, so the same picture
        assert answer.headers["x-loradeck-retried-after"] == victim
        assert answer.headers["x-loradeck-replica"] != victim
        assert np.array_equal(
            first_picture(answer), first_picture(single["client"].post("/sdapi/v1/txt2img", json=long))
        )
    else:
        assert answer.status_code == 503 and "died" in answer.json()["detail"]
    lost = client.get(f"/loradeck/v1/jobs/{job_id}").json()  # the queue knows: never lost silently
    assert lost["state"] == "failed" and lost["lost"] and victim in lost["error"]
    codes = [client.post("/sdapi/v1/txt2img", json=body(STACKS[i % 3], seed=i)).status_code for i in range(20)]
    assert codes == [200] * 20
    assert victim in client.get("/loradeck/v1/cluster").json()["dead"]
    deadline = time.monotonic() + 120  # Ray restarts the replica (a new id); new stacks then go to it first
    while len(alive := replicas(cluster)) < 2:
        assert time.monotonic() < deadline, "Ray did not restart the replica"
        time.sleep(0.5)
    assert victim not in alive
    fresh = client.post("/sdapi/v1/txt2img", json=body("<lora:inky:0.3> <lora:dotty:0.3>", seed=1))
    assert fresh.status_code == 200 and alive[fresh.headers["x-loradeck-replica"]]["completed"] <= 1
