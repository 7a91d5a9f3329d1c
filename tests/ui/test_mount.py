"""The UI mounted on the server's app: one app for the page, its assets and both APIs; Basic auth covers it."""

from __future__ import annotations

import base64

from fastapi.testclient import TestClient

from tests.ui.helpers import write_demo_lora, write_sidecars


def test_ui_and_apis_share_one_app_behind_auth(home):
    from loradeck.server import create_app
    from loradeck.services.studio import Studio
    from loradeck.ui import mount_ui

    lora = write_demo_lora(home / "models" / "Lora" / "pix.safetensors", seed=1)
    write_sidecars(lora, activation="pixart", weight=0.6)
    studio = Studio(home=home)
    app = mount_ui(create_app(studio, auth={"ann": "secret"}), studio)
    good = {"Authorization": "Basic " + base64.b64encode(b"ann:secret").decode()}
    with TestClient(app) as client:
        assert client.get("/").status_code == 401  # the page is protected like the API
        page = client.get("/", headers=good)
        assert page.status_code == 200 and "ld-lora-cards" in page.text  # the Blocks config is inlined in the page
        assert client.get("/sdapi/v1/samplers", headers=good).status_code == 200
        thumb = client.get("/loradeck/ui/lora-preview", params={"key": "pix"}, headers=good)
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
        missing = client.get("/loradeck/ui/lora-preview", params={"key": "../pix.safetensors"}, headers=good)
        assert missing.status_code == 404
