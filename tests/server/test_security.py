"""Issue 19: names from the network never lead outside the server's folders (422 with one sentence, never 500;
numbers and picture bombs are in test_request_validation.py).

Each path trick is sent twice, once while its target exists and once after it is removed: the answers must be
identical (no existence oracle). While they are sent, every ``open`` (audit hook) and ``os.stat`` of the sentinel
folder outside the home is recorded: nothing may touch it, and the library index must not change.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from loradeck.server import create_app
from tests.helpers.hostile import fill_outside, make_home, png_b64
from tests.helpers.hostile import txt2img_body as _txt2img
from tests.train.conftest import draw_pictures

# ---------------------------------------------------------------------------------------------------- who touches what
_WATCH: list[tuple[Path, list[str]]] = []  # (folder, touched paths) while a test records


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _WATCH and args and isinstance(args[0], str | bytes | os.PathLike):
        _note(args[0])


def _note(path) -> None:
    text = os.fsdecode(path) if isinstance(path, bytes | os.PathLike) else str(path)
    for folder, touched in _WATCH:
        if text.startswith(str(folder)):
            touched.append(text)


sys.addaudithook(_audit)  # cannot be removed; it only records while _WATCH is set


@pytest.fixture
def watch(monkeypatch):
    """watch(folder) → list of paths under folder that were opened or stat-ed (os.stat: pathlib's exists/is_file)."""
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        if not isinstance(path, int):
            _note(path)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)

    def start(folder: Path) -> list[str]:
        touched: list[str] = []
        _WATCH.append((folder, touched))
        return touched

    yield start
    _WATCH.clear()


# ---------------------------------------------------------------------------------------------------- a home
@pytest.fixture
def world(tmp_path):
    from loradeck.services.studio import Studio

    w = make_home(tmp_path)
    studio = Studio(home=w["home"])
    with TestClient(create_app(studio)) as client:
        assert client.post("/sdapi/v1/refresh-checkpoints").status_code == 200  # the index as a scan leaves it
        yield w | {"client": client, "studio": studio}


def index_rows(home: Path) -> list[tuple]:
    with sqlite3.connect(home / "cache" / "library.sqlite") as db:
        return sorted(db.execute("SELECT * FROM files").fetchall())


# ---------------------------------------------------------------------------------------------------- the tricks
def tricks(target: Path, root: Path) -> dict[str, str]:
    """Ways to spell ``target`` (outside) from a field that resolves names under ``root``."""
    rel = os.path.relpath(target, root)  # ../../outside/…
    return {
        "absolute": str(target),
        "dot-dot": rel,
        "dot-dot from the server's cwd": os.path.relpath(target, os.getcwd()),
        "url-encoded dot-dot": rel.replace(".", "%2e").replace("/", "%2f"),
        "url-encoded absolute": quote(str(target), safe=""),
        "double-encoded": quote(quote(str(target), safe=""), safe=""),
        "backslashes": rel.replace("/", "\\"),
        "tilde": "~/" + os.path.relpath(target, Path.home()),
        "dot-dot inside a name": f"sub/../{rel}",
    }


def checkpoint_fields(client: TestClient) -> dict:
    return {
        "options sd_model_checkpoint": lambda t: client.post("/sdapi/v1/options", json={"sd_model_checkpoint": t}),
        "txt2img override_settings": lambda t: client.post(
            "/sdapi/v1/txt2img", json=_txt2img(override_settings={"sd_model_checkpoint": t})
        ),
        "img2img override_settings": lambda t: client.post(
            "/sdapi/v1/img2img",
            json=_txt2img(init_images=[png_b64()], override_settings={"sd_model_checkpoint": t}),
        ),
        "txt2img refiner_checkpoint": lambda t: client.post("/sdapi/v1/txt2img", json=_txt2img(refiner_checkpoint=t)),
        "txt2img hr_checkpoint_name": lambda t: client.post("/sdapi/v1/txt2img", json=_txt2img(hr_checkpoint_name=t)),
        "train base": lambda t: client.post("/loradeck/v1/train", json={"data": "pics", "name": "x", "base": t}),
    }


def lora_fields(client: TestClient) -> dict:
    return {
        "prompt <lora:…>": lambda t: client.post("/sdapi/v1/txt2img", json=_txt2img(prompt=f"a <lora:{t}:1>")),
        "GET /loradeck/v1/loras/{name}": lambda t: client.get(f"/loradeck/v1/loras/{quote(t, safe='')}"),
        "GET …/loras/{name}/preview": lambda t: client.get(f"/loradeck/v1/loras/{quote(t, safe='')}/preview"),
    }


def _answers(fields: dict, spellings: dict) -> dict:
    out = {}
    for field, send in fields.items():
        for how, text in spellings.items():
            r = send(text)
            out[(field, how)] = (r.status_code, r.text)
    return out


def test_paths_from_the_network_are_refused_the_same_whether_or_not_they_exist(world, watch):
    client, outside = world["client"], world["outside"]
    secret = outside / "secret.safetensors"
    fields = [
        (checkpoint_fields(client), tricks(secret, world["models_dir"])),
        (lora_fields(client), tricks(secret.with_suffix(""), world["lora_dir"])),
        (
            {"train data": lambda t: client.post("/loradeck/v1/train", json={"data": t, "name": "x"})},
            tricks(outside / "pics", world["datasets"]),
        ),
    ]
    before = index_rows(world["home"])
    touched = watch(outside)

    fill_outside(outside)
    touched.clear()  # writing the sentinel is the test's own doing
    present = {k: v for f, s in fields for k, v in _answers(f, s).items()}
    assert touched == []  # not opened, not even stat-ed
    shutil.rmtree(outside)
    touched.clear()  # and so is removing it
    missing = {k: v for f, s in fields for k, v in _answers(f, s).items()}
    assert touched == []

    assert len(present) == 6 * 9 + 3 * 9 + 9
    for key, (status, text) in present.items():
        assert status == 422, (key, status, text)
        body = json.loads(text)
        assert body["detail"].endswith(".") and "\n" not in body["detail"], key
        assert missing[key] == (status, text), f"{key}: the answer depends on whether the target exists"
    assert index_rows(world["home"]) == before
    assert all(not row[0].startswith(str(outside)) for row in index_rows(world["home"]))


def test_refusals_say_what_and_how_to_widen(world):
    client, secret = world["client"], str(world["outside"] / "secret.safetensors")
    r = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": secret})
    assert r.status_code == 422
    assert r.json()["detail"] == (
        f"The checkpoint {secret!r} is a path; the API only loads checkpoints by their name in the library (see "
        "/sdapi/v1/sd-models) or 'demo' (a local user can allow more folders with the allowed_paths setting or "
        "loradeck serve --allow-path)."
    )
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "demo"  # nothing changed
    r = client.post("/loradeck/v1/train", json={"data": secret, "name": "x"})
    assert r.status_code == 422 and "is not inside the datasets folder" in r.json()["detail"]


@pytest.mark.parametrize(
    "name, why",
    [
        ("..", "names a folder"),
        (".", "names a folder"),
        ("../escape", "folder separator"),
        ("a/b", "folder separator"),
        ("a\\b", "folder separator"),
        ("%2e%2e", "names a folder"),
        ("..%2fescape", "folder separator"),
        (".hidden", "starts with a dot"),
        ("bad\x00name", "control characters"),
        ("line\nbreak", "control characters"),
        ("", "empty"),
        ("CON", "reserved device name"),
        ("trailing.", "ends with a dot"),
        ("x" * 201, "longer than 200"),
    ],
)
def test_train_output_name_must_be_one_plain_file_name(world, name, why):
    r = world["client"].post("/loradeck/v1/train", json={"data": "pics", "name": name})
    assert r.status_code == 422 and why in r.json()["detail"], r.text
    assert not (world["home"] / "loss.png").exists() and not (world["home"] / "training").exists()
    assert sorted(p.name for p in world["lora_dir"].iterdir()) == ["red.preview.png", "red.safetensors"]


def test_symlinks_out_of_the_datasets_folder_are_refused(world):
    outside = world["outside"]
    (world["datasets"] / "escape").symlink_to(outside / "pics", target_is_directory=True)
    client = world["client"]
    answers = []
    for exists in (True, False):
        if exists:
            fill_outside(outside)
        else:
            shutil.rmtree(outside)
        r = client.post("/loradeck/v1/train", json={"data": "escape", "name": "x"})
        answers.append((r.status_code, r.text))
        r = client.post("/loradeck/v1/train", json={"data": "escape/2_shapes", "name": "x"})
        answers.append((r.status_code, r.text))
    assert answers[0][0] == answers[1][0] == 422 and answers[:2] == answers[2:]


def test_allowed_paths_widen_on_purpose_but_not_through_symlinks(tmp_path):
    from loradeck.services.studio import Studio

    w = make_home(tmp_path)
    fill_outside(w["outside"])
    allowed = tmp_path / "allowed"
    draw_pictures(allowed / "pics" / "2_shapes", 2)
    (allowed / "notes.txt").write_text("not a model")
    (allowed / "escape").symlink_to(w["outside"], target_is_directory=True)
    studio = Studio(home=w["home"], allowed_paths=(allowed,))
    with TestClient(create_app(studio)) as client:
        # inside the allowed folder: the path passes the door and the file is looked at (it is not a model)
        r = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": str(allowed / "notes.txt")})
        assert r.json()["error"] == "FormatError" and "unknown checkpoint type '.txt'" in r.json()["detail"]
        r = client.post("/loradeck/v1/train", json={"data": str(allowed / "pics"), "name": "x", "base": "nope"})
        assert r.status_code == 404 and "Checkpoint not found: nope" in r.json()["detail"]  # data passed, base not
        # out of it again by a symlink or by dot-dot: refused as before
        for sneaky in (allowed / "escape" / "secret.safetensors", f"{allowed}/../outside/secret.safetensors"):
            r = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": str(sneaky)})
            assert r.status_code == 422, (sneaky, r.text)
        r = client.post("/loradeck/v1/train", json={"data": str(allowed / "escape" / "pics"), "name": "x"})
        assert r.status_code == 422
        rows = index_rows(w["home"])
    assert not any(row[0].startswith(str(w["outside"])) for row in rows)


def test_the_library_itself_opens_outside_paths_only_where_allowed(tmp_path):
    """Defence in depth: even if a route forgot its check, a served library indexes nothing outside its roots."""
    from loradeck.errors import ModelLoadError
    from loradeck.library import Library

    w = make_home(tmp_path)
    fill_outside(w["outside"])
    lib = Library(w["lora_dir"], w["models_dir"], w["home"] / "cache")
    lib.outside_roots = ()
    with pytest.raises(ModelLoadError, match="Checkpoint not found"):
        lib.resolve_checkpoint(w["outside"] / "secret.safetensors")
    assert not any(row[0].startswith(str(w["outside"])) for row in index_rows(w["home"]))
    with pytest.raises(ModelLoadError, match="Checkpoint not found"):
        Library(w["lora_dir"], w["models_dir"], w["home"] / "cache").resolve_checkpoint(
            w["outside"] / "secret.safetensors", paths=False
        )


def test_allowed_paths_come_from_toml_env_and_the_cli(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from loradeck.cli import app as cli_app
    from loradeck.settings import load_settings

    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(f'allowed_paths = ["{tmp_path / "a"}"]\ndatasets_dir = "{tmp_path / "d"}"\n')
    s = load_settings(home=home)
    assert s.allowed_paths == (tmp_path / "a",) and s.datasets_path == tmp_path / "d"
    monkeypatch.setenv("LORADECK_ALLOWED_PATHS", f"{tmp_path / 'b'}{os.pathsep}{tmp_path / 'c'}")
    assert load_settings(home=home).allowed_paths == (tmp_path / "b", tmp_path / "c")
    assert load_settings(home=home, allowed_paths=[str(tmp_path / "e")]).allowed_paths == (tmp_path / "e",)
    assert Path(load_settings(home=home).home / "datasets") != load_settings(home=home).datasets_path

    served = {}
    monkeypatch.setattr("loradeck.server.shutdown.serve", lambda app, **kw: served.setdefault("app", app))
    monkeypatch.setattr("loradeck.ui.mount_ui", lambda app, studio: app)
    monkeypatch.setenv("LORADECK_HOME", str(home))
    args = ["serve", "--allow-path", str(tmp_path / "x"), "--allow-path", str(tmp_path / "y")]
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 0, result.output
    settings = served["app"].state.studio.settings
    assert settings.allowed_paths == (tmp_path / "x", tmp_path / "y")
    assert served["app"].state.studio.library.outside_roots == (tmp_path / "x", tmp_path / "y")


# ---------------------------------------------------------------------------------------------------- civitai
@pytest.mark.parametrize(
    "hostile", ["../../../outside/evil.safetensors", "/outside/evil.safetensors", "..\\evil.safetensors"]
)
def test_civitai_download_names_stay_in_the_lora_folder(tmp_path, hostile):
    import time

    from loradeck.services.studio import Studio
    from tests.civitai.fake_server import FakeCivitai, lora_bytes

    w = make_home(tmp_path)
    with FakeCivitai() as fake:
        entry = fake.add_model("Evil", lora_bytes(5), file_name=hostile)
        studio = Studio(home=w["home"], civitai_url=fake.base_url, civitai_token=fake.token)
        with TestClient(create_app(studio)) as client:
            queued = client.post("/loradeck/v1/civitai/download", json={"ref": str(entry.version["id"])})
            deadline = time.monotonic() + 60
            while (job := client.get(queued.json()["status_url"]).json())["state"] in ("queued", "running"):
                assert time.monotonic() < deadline
                time.sleep(0.05)
    assert job["state"] == "done", job
    assert Path(job["detail"]["path"]) == w["lora_dir"] / "evil.safetensors"
    assert not w["outside"].exists() and not (tmp_path / "evil.safetensors").exists()


# ---------------------------------------------------------------------------------------------------- web UI
def test_web_ui_handlers_confine_names_like_the_api(tmp_path, watch):
    """The web UI is reached over the same port: its checkpoint picker and Train tab refuse paths the same way."""
    from types import SimpleNamespace

    from loradeck.services.studio import Studio
    from loradeck.ui.app import build_ui

    w = make_home(tmp_path)
    fill_outside(w["outside"])
    studio = Studio(home=w["home"])
    blocks = build_ui(studio)
    handlers = {f.fn.__qualname__: f.fn for f in blocks.fns.values() if f.fn is not None}
    train, load = handlers["build_train_tab.<locals>.run"], handlers["build_generate_tab.<locals>.load"]
    request = SimpleNamespace(session_hash="t")
    settings = (3, 2, 1, 1e-3, 1, "adamw", "constant", request)  # steps … scheduler, request
    touched = watch(w["outside"])

    def shown(update: dict) -> str:
        return " ".join(str(v) for v in update.values())

    out = shown(next(train(str(w["outside"] / "pics"), "x", "", "demo", *settings)))
    assert "is not inside the datasets folder" in out
    out = shown(next(train("pics", "..", "", "demo", *settings)))
    assert "cannot be a file name" in out
    out = shown(next(train("pics", "x", "", str(w["outside"] / "secret.safetensors"), *settings)))
    assert "is a path; the API only loads checkpoints" in out
    previous, *_rest, status = load(str(w["outside"] / "secret.safetensors"), "demo")
    assert previous == "demo" and "is a path" in str(status)
    assert touched == []
    assert not (w["home"] / "training").exists()
