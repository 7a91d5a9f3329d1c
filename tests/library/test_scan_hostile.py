"""One bad LoRA must not break the library (issue 19): a 1-D ``lora_down`` and a header nested 1,000 deep in
models/Lora are listed as unreadable with a sentence; the good LoRA is listed and draws exactly as in a clean
folder; ``/sdapi/v1/loras`` and ``/refresh-loras`` answer 200; a leftover ``.part`` download is never a model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors.numpy import load_file, save_file
from tests.helpers.fuzz_cases import join, split
from tests.helpers.loras import write_demo_lora
from typer.testing import CliRunner

from loradeck.library import Library
from loradeck.vocab import GenerationRequest


def _hostile_folder(lora_dir):
    good = write_demo_lora(lora_dir / "good.safetensors", seed=3, scale=0.3)
    tensors = load_file(str(good))
    down = next(k for k in tensors if k.endswith("lora_down.weight"))
    tensors[down] = tensors[down].reshape(-1)  # 1-D: was an IndexError in `lora list`
    save_file(tensors, str(lora_dir / "flat.safetensors"))
    header, body = split(good.read_bytes())
    raw = ('{"deep":' + "[" * 1000 + "]" * 1000 + "," + json.dumps(header)[1:]).encode()
    (lora_dir / "deep.safetensors").write_bytes(join(None, body, raw=raw))  # was a RecursionError
    (lora_dir / "sub").mkdir()
    (lora_dir / "sub" / "half.safetensors.part").write_bytes(good.read_bytes()[:1000])  # a killed download
    (lora_dir / "good.json").write_text('{"activation text": ' + "[" * 5000 + "]" * 5000 + "}")  # hostile sidecar
    (lora_dir / "good.civitai.info").write_text("[/foo] not json")
    return good


def test_scan_lists_bad_files_as_unreadable_and_goes_on(tmp_path):
    lora_dir = tmp_path / "Lora"
    _hostile_folder(lora_dir)
    library = Library(lora_dir, tmp_path / "ckpt", tmp_path / "cache")
    report = library.scan()
    assert [e.name for e in library.loras()] == ["good"]
    messages = {e.path.name: e.message for e in report.errors}
    assert set(messages) == {"flat.safetensors", "deep.safetensors"}
    assert "lora_down.weight has 1 dimensions" in messages["flat.safetensors"]
    assert "nested too deeply" in messages["deep.safetensors"]
    for name, text in messages.items():
        assert name in text and "\n" not in text
    good = library.loras()[0]
    assert good.rank == 4 and good.module_count > 0
    assert any("good.json" in w for w in good.warnings)  # the sidecar is reported, not fatal
    # the same answer from the index on the next scan (rows cached with their error)
    again = library.scan()
    assert {e.path.name: e.message for e in again.errors} == messages and again.reused == 3


def test_cli_lora_list_marks_unreadable_files(tmp_path, monkeypatch):
    from loradeck.cli import app

    home = tmp_path / "home"
    _hostile_folder(home / "models" / "Lora")
    monkeypatch.setenv("LORADECK_HOME", str(home))
    result = CliRunner().invoke(app, ["lora", "list", "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert {"good", "flat", "deep"} <= set(rows)  # (the embedded demo LoRAs are listed too)
    assert rows["flat"]["unreadable"] and "1 dimensions" in rows["flat"]["error"]
    assert not rows["good"].get("unreadable") and rows["good"]["rank"] == 4
    monkeypatch.setenv("COLUMNS", "400")  # one table row per line
    table = CliRunner().invoke(app, ["lora", "list"], catch_exceptions=False)
    assert table.exit_code == 0
    lines = {line.split("│")[1].strip(): line for line in table.output.splitlines() if line.count("│") > 2}
    assert "unreadable" in lines["flat"] and "unreadable" in lines["deep"] and "unreadable" not in lines["good"]
    assert "1 dimensions" in lines["flat"] and "nested too deeply" in lines["deep"]


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    """A hostile home and a clean one, each with the same good LoRA, each behind a TestClient."""
    from loradeck.server import create_app
    from loradeck.services.studio import Studio

    hostile, clean = tmp_path_factory.mktemp("hostile"), tmp_path_factory.mktemp("clean")
    good = _hostile_folder(hostile / "models" / "Lora")
    (clean / "models" / "Lora").mkdir(parents=True)
    shutil.copy(good, clean / "models" / "Lora" / "good.safetensors")
    studios = {"hostile": Studio(home=hostile), "clean": Studio(home=clean)}
    with TestClient(create_app(studios["hostile"])) as client:
        yield studios, client


def test_api_lists_and_refreshes_with_bad_files(homes):
    _studios, client = homes
    response = client.get("/sdapi/v1/loras")
    assert response.status_code == 200
    assert "good" in [item["name"] for item in response.json()]
    assert client.post("/sdapi/v1/refresh-loras").status_code == 200
    errors = client.get("/loradeck/v1/library/errors")
    assert errors.status_code == 200
    assert sorted(e["path"].rsplit("/", 1)[1] for e in errors.json()) == ["deep.safetensors", "flat.safetensors"]


def test_generation_with_the_good_lora_is_unaffected(homes):
    studios, _client = homes

    def draw(studio, prompt):
        request = GenerationRequest(prompt, seed=5, steps=4, width=32, height=32, save=False, sampler="Euler")
        result = studio.generate(request)
        assert not [w for w in result.warnings if "good" in w], result.warnings
        return np.asarray(result.images[0].image).astype(int)

    hostile = draw(studios["hostile"], "a red circle <lora:good:1>")
    clean = draw(studios["clean"], "a red circle <lora:good:1>")
    plain = draw(studios["clean"], "a red circle")
    assert np.array_equal(hostile, clean)
    assert np.abs(hostile - plain).max() > 8  # the LoRA was applied, not skipped


def test_api_generation_naming_a_bad_lora_is_not_a_server_error(homes):
    _studios, client = homes
    body = {"prompt": "a red circle <lora:flat:1>", "steps": 2, "width": 32, "height": 32, "seed": 1}
    response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code < 500, response.text
    body["prompt"] = "a red circle <lora:good:1>"
    assert client.post("/sdapi/v1/txt2img", json=body).status_code == 200  # and the server goes on
