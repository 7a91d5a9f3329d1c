"""One owner for every job: the API, the UI and the CLI submit to the studio's queue and see the same state."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest

from loradeck.services.jobs import QUEUED
from loradeck.vocab import GenerationRequest
from tests.server.helpers import b64_to_array, write_demo_lora, write_variant_checkpoint
from tests.train.conftest import draw_pictures

STEPS = 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from loradeck.server import create_app
    from loradeck.services.studio import Studio
    from tests.server.helpers import running_server

    home = tmp_path_factory.mktemp("onequeue")
    lora_dir, models_dir = home / "models" / "Lora", home / "models" / "Stable-diffusion"
    write_demo_lora(lora_dir / "alpha.safetensors", seed=3)
    write_demo_lora(lora_dir / "beta.safetensors", seed=4)
    models_dir.mkdir(parents=True)
    write_variant_checkpoint(models_dir, "variant")
    studio = Studio(home=home)
    app = create_app(studio, fairness=4)
    with running_server(app) as url, httpx.Client(base_url=url, timeout=900) as client:
        yield {"studio": studio, "client": client, "home": home}


def _hold_queue(studio) -> threading.Event:
    """A job that keeps the device busy until the returned event is set (its key None keeps the last stack)."""
    release, started = threading.Event(), threading.Event()

    def hold(job):
        started.set()
        release.wait(60)

    studio.queue.start()
    studio.queue.submit(hold, kind="hold")
    assert started.wait(30)
    return release


def _wait_pending(studio, n: int) -> None:
    deadline = time.monotonic() + 60
    while len(studio.queue.pending()) < n:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_api_and_ui_generations_share_the_queue_in_affinity_order(setup):
    from loradeck.ui.generation import Run

    studio, client = setup["studio"], setup["client"]
    ui_request = GenerationRequest("a red circle <lora:alpha:1>", seed=11, steps=STEPS, save=False)
    api_body = {"prompt": "a blue square <lora:beta:1>", "seed": 12, "steps": STEPS, "sampler_name": "Euler a"}
    api_body |= {"width": 32, "height": 32}  # A1111's default is 512
    solo_ui = studio.generate(ui_request).images[0].image  # also leaves stack "alpha" merged
    solo_api = np.asarray(
        studio.generate(GenerationRequest(api_body["prompt"], seed=12, steps=STEPS, sampler="Euler a", save=False))
        .images[0]
        .image
    )
    studio.generate(ui_request)  # "alpha" merged last: a job that needs it may overtake an earlier one
    release = _hold_queue(studio)
    answers: dict = {}
    api = threading.Thread(target=lambda: answers.update(api=client.post("/sdapi/v1/txt2img", json=api_body)))
    api.start()
    _wait_pending(studio, 1)  # the API job waits first …
    run = Run(studio, ui_request).start()  # … then the UI's, which needs the stack already merged
    _wait_pending(studio, 2)
    api_job, ui_job = studio.queue.pending()
    assert ui_job is run.job and api_job.kind == "txt2img"
    release.set()
    api_job.result(600)
    api.join(600)
    assert run.done.wait(600) and run.error is None
    order = studio.queue.order
    assert order.index(ui_job.id) < order.index(api_job.id)  # affinity: the later UI job ran first
    assert api_job.passed == 1
    np.testing.assert_array_equal(np.asarray(run.result.images[0].image), np.asarray(solo_ui))
    np.testing.assert_array_equal(b64_to_array(answers["api"].json()["images"][0]), solo_api)


def test_checkpoint_switched_in_the_ui_is_the_api_option_and_stays(setup):
    from loradeck.ui.generate_tab import switch_checkpoint

    studio, client = setup["studio"], setup["client"]
    model, note = switch_checkpoint(studio, "variant")
    assert model.title == "variant" and "Loaded" in note
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "variant"
    answer = client.post("/sdapi/v1/txt2img", json={"prompt": "a dot", "seed": 1, "steps": 1})
    info = answer.json()["info"]
    assert '"sd_model_name": "variant"' in info
    assert studio.loaded is not None and studio.loaded.title == "variant"  # the API job did not switch back
    switch_checkpoint(studio, "demo")
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "demo"


def test_a_style_that_adds_a_lora_changes_the_stack_key(setup):
    studio = setup["studio"]
    (setup["home"] / "styles.csv").write_text('name,prompt,negative_prompt\nbeta style,"{prompt} <lora:beta:0.5>",\n')
    plain = studio.plan(GenerationRequest("a red circle", seed=1, steps=STEPS))
    styled = studio.plan(GenerationRequest("a red circle", seed=1, steps=STEPS, styles=["beta style"]))
    assert plain.stack_key != styled.stack_key
    assert [c.tag.name for c in styled.loras] == ["beta"] and plain.loras == ()
    by_hand = studio.plan(GenerationRequest("a red circle <lora:beta:0.5>", seed=1, steps=STEPS))
    assert by_hand.stack_key == styled.stack_key


def test_training_from_ui_and_api_waits_for_a_running_generation(setup, tmp_path):
    from loradeck.services.types import TrainConfig
    from loradeck.ui.train_tab import Training

    studio, client = setup["studio"], setup["client"]
    data = setup["home"] / "datasets" / "shapes"  # over the API, training data comes from <home>/datasets
    draw_pictures(data / "2_shapes", 2)
    release = _hold_queue(studio)  # stands for a long generation
    running = studio.running()
    ui = Training(studio, TrainConfig(data=data, name="uitrained", rank=2, alpha=1, steps=2, device="cpu")).start()
    body = {"data": "shapes", "name": "apitrained", "rank": 2, "alpha": 1, "steps": 2}
    queued = client.post("/loradeck/v1/train", json=body)
    assert queued.status_code == 202
    api_job = studio.job(queued.json()["job_id"])
    time.sleep(0.5)
    assert studio.running() is running  # neither training started beside the generation
    assert ui.job.state == QUEUED and api_job.state == QUEUED
    assert "Waiting" in ui.describe()
    release.set()
    assert ui.done.wait(300) and ui.error is None, ui.error
    api_job.result(300)
    order = studio.queue.order
    assert order.index(running.id) < order.index(ui.job.id) < order.index(api_job.id)
    assert ui.result.lora_path.name == "uitrained.safetensors"
    assert api_job.detail["lora"].endswith("apitrained.safetensors")
