"""X/Y/Z plots through the job queue: cells equal solo generations, LoRA merges minimised, A1111's script call."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

from loradeck.prompt.grid_axes import parse_axis
from loradeck.services.grid import GridRequest
from loradeck.vocab import GenerationRequest

PROMPT = "a red circle on a blue background, stripy"
STEPS = 2


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    from loradeck.services.studio import Studio

    studio = Studio(home=tmp_path_factory.mktemp("grid"))
    yield studio
    studio.close()


def test_cells_equal_solo_generations_and_each_stack_merges_once(studio):
    base = GenerationRequest(PROMPT, steps=STEPS)
    request = GridRequest(base, x=parse_axis("lora:stripy=0.3,0.6,1"), y=parse_axis("seed=1,2,3,4"))
    studio.generate(GenerationRequest(PROMPT, steps=STEPS, seed=9, save=False))  # no LoRA merged now
    result = studio.grid(request)
    assert len(result.cells) == 12 and not result.interrupted
    assert result.merges <= 3 and result.stack_switches == 2 and result.checkpoint_loads == 1
    for i in (0, 5, 11):  # x fastest: cell i is weight i % 3, seed i // 3 + 1
        weight, seed = (0.3, 0.6, 1.0)[i % 3], i // 3 + 1
        solo = studio.generate(GenerationRequest(f"{PROMPT} <lora:stripy:{weight:g}>", steps=STEPS, seed=seed))
        np.testing.assert_array_equal(np.asarray(result.cells[i].images[0].image), np.asarray(solo.images[0].image))
        assert result.cells[i].images[0].infotext.split("\n", 1)[1] == solo.images[0].infotext.split("\n", 1)[1]
    cell = result.cells[0].images[0]
    assert Image.open(cell.path).info["parameters"] == cell.infotext  # every cell is its own PNG with its infotext
    written = Image.open(result.grid_path).info["parameters"]
    assert 'X Type: LoRA stripy, X Values: "0.3, 0.6, 1.0", Y Type: Seed, Y Values: "1, 2, 3, 4"' in written
    w0 = cell.image.width * 4  # 32 px cells are shown at 128 px
    assert result.grid.width == w0 + 3 * w0 and result.grid.height > 4 * w0  # row labels, 3 columns, a label row


def test_a_bad_cell_refuses_the_whole_grid_before_anything_runs(studio):
    from loradeck.errors import InvalidRequest

    done = studio.queue.completed
    with pytest.raises(InvalidRequest):
        studio.submit_grid(GridRequest(GenerationRequest(PROMPT, steps=STEPS), x=parse_axis("sampler=Euler,Nope")))
    assert studio.queue.completed == done


def test_a1111_xyz_script_through_webuiapi_returns_the_grid_and_the_cells(tmp_path):
    import webuiapi

    from loradeck.server import create_app
    from loradeck.services.studio import Studio
    from tests.server.helpers import running_server

    studio = Studio(home=tmp_path / "home")
    with running_server(create_app(studio)) as url:
        parts = urlsplit(url)
        api = webuiapi.WebUIApi(host=parts.hostname, port=parts.port)
        assert "x/y/z plot" in api.get_scripts()["txt2img"]
        # A1111 1.10 indices: 1 = Seed, 7 = Prompt S/R; include_lone_images (index 10) asks for the cells too
        args = [
            1,
            "5,6",
            [],
            7,
            "stripy:0.5,stripy:1",
            [],
            0,
            "",
            [],
            True,
            True,
            False,
            False,
            False,
            False,
            False,
            0,
            False,
        ]
        result = api.txt2img(
            prompt=f"{PROMPT} <lora:stripy:0.5>",
            steps=STEPS,
            width=32,
            height=32,
            script_name="x/y/z plot",
            script_args=args,
        )
        assert len(result.images) == 1 + 4
        solo = studio.generate(GenerationRequest(f"{PROMPT} <lora:stripy:1>", steps=STEPS, seed=6, sampler="Euler a"))
        np.testing.assert_array_equal(np.asarray(result.images[4].convert("RGB")), np.asarray(solo.images[0].image))
        assert result.info["stack_switches"] >= 1
        body = {
            "prompt": PROMPT,
            "steps": STEPS,
            "width": 32,
            "height": 32,
            "script_name": "X/Y/Z plot",
            "script_args": [13, "1,2"],
        }
        refused = httpx.post(f"{url}/sdapi/v1/txt2img", json=body, timeout=60)
        assert refused.status_code == 422 and "'Sigma Churn' is not supported" in refused.json()["detail"]
