"""The Embeddings tab in a real browser: the cards, a click that puts the name in the negative prompt, a picture
whose infotext has ``TI hashes``, and an other-family embedding's warning in the status line."""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import save_file

from tests.helpers.servers import running_server
from tests.ui.test_browser import ARGS, CHROMIUM, SCREENSHOTS, shoot, wait_value

pytestmark = [
    pytest.mark.slow,  # a server and a browser
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium"),
]


def test_embedding_cards_in_the_browser(tmp_path):
    from playwright.sync_api import sync_playwright

    from loradeck.server import create_app
    from loradeck.services.studio import Studio
    from loradeck.ui import mount_ui

    folder = tmp_path / "models" / "embeddings"
    folder.mkdir(parents=True)
    save_file({"emb_params": torch.randn(2, 64, generator=torch.Generator().manual_seed(2))}, str(folder / "blotq.safetensors"))
    save_file({"emb_params": torch.zeros(1, 768)}, str(folder / "easyneg.safetensors"))
    studio = Studio(home=tmp_path)
    app = mount_ui(create_app(studio, preload=True), studio)
    with running_server(app) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.set_default_timeout(60_000)
        page.goto(url)
        page.wait_for_selector("#ld-lora-cards .ld-card")
        page.click("#ld-tab-embeddings-button, button[role=tab]:has-text('Embeddings')")
        grid = page.locator("#ld-emb-cards")
        grid.locator(".ld-card").first.wait_for()
        assert grid.locator(".ld-card").count() == 2
        page.wait_for_selector("#ld-emb-cards .ld-mismatch")  # the family arrives with the loaded model
        assert "not for Demo" in grid.locator('.ld-card[data-key="easyneg"]').inner_text()
        assert "2 vectors" in grid.locator('.ld-card[data-key="blotq"]').inner_text()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.evaluate("window.scrollTo(0, 0)")  # shoot() clips in page coordinates: bounding boxes must match them
        shoot(page, ["#ld-emb-search", "#ld-emb-refresh", "#ld-emb-cards"], SCREENSHOTS / "embedding-cards.png")

        page.fill("#ld-prompt textarea", "a red circle easyneg")
        page.fill("#ld-negative textarea", "blurry")
        grid.locator('.ld-card[data-key="blotq"]').click()  # "Negative prompt" is the default target
        assert wait_value(page, "#ld-negative textarea", "blotq") == "blurry, blotq"
        page.click("#ld-generate")
        infotext = wait_value(page, "#ld-infotext textarea", "TI hashes")
        sha = hashlib.sha256((folder / "blotq.safetensors").read_bytes()).hexdigest()[:12]
        assert f'TI hashes: "blotq: {sha}"' in infotext
        assert "Embedding easyneg is for SD1 but the model is Demo" in page.locator("#ld-status").inner_text()
        browser.close()
