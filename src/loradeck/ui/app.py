"""The web UI: ``build_ui(studio)`` makes the Gradio Blocks, ``mount_ui(app, studio)`` puts it at ``/`` of the
server's FastAPI app — same process, same port as the A1111 API; no second server (SSR, which would start a Node
server on another port, stays off).
"""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from loradeck.errors import LoradeckError
from loradeck.services.studio import Studio
from loradeck.ui import status
from loradeck.ui.catalog import LoraCatalog
from loradeck.ui.civitai_tab import build_civitai_tab
from loradeck.ui.generate_tab import DEMO, build_generate_tab, checkpoint_choices, name_for_hash
from loradeck.ui.generation import Runs
from loradeck.ui.grid_tab import build_grid_tab
from loradeck.ui.lora_cards import PREVIEW_ROUTE, cards_html, folder_choices
from loradeck.ui.pnginfo_tab import build_pnginfo_tab
from loradeck.ui.style import CSS, SHORTCUTS_JS, theme
from loradeck.ui.tools_tab import build_tools_tab
from loradeck.ui.train_tab import build_train_tab

log = logging.getLogger("loradeck.ui")

HEADER = """<div id="ld-header"><h1>loradeck</h1><span class="ld-tagline">LoRA studio · Stable Diffusion</span>
<a href="docs" target="_blank" rel="noopener">API docs</a></div>"""


def build_ui(studio: Studio, *, catalog: LoraCatalog | None = None) -> gr.Blocks:
    """The Blocks over ``studio``. Serve it with :func:`mount_ui` (card previews come from a route it adds)."""
    catalog = catalog or LoraCatalog(studio)
    runs = Runs()
    with gr.Blocks(title="loradeck", analytics_enabled=False, fill_width=True) as blocks:
        gr.HTML(HEADER)
        with gr.Tabs(elem_id="ld-tabs") as tabs:
            with gr.Tab("Generate", id="generate", elem_id="ld-tab-generate"):
                gen = build_generate_tab(studio, catalog, runs)
            with gr.Tab("PNG info", id="pnginfo", elem_id="ld-tab-pnginfo"):
                png_send, png_text, png_status, _ = build_pnginfo_tab()
            cards = gen.cards

            def refresh_cards(query: str, folder: str, order: str, fam: str | None):
                """After a download or a training run: the new LoRA's card appears at once."""
                catalog.refresh()
                choices = folder_choices(catalog)
                folder = folder if folder in choices else choices[0]
                return gr.update(choices=choices, value=folder), cards_html(catalog, query, folder, order, fam)

            then_refresh = (refresh_cards, [*cards.filters, gen.family], [cards.folder, cards.grid])
            with gr.Tab("Civitai", id="civitai", elem_id="ld-tab-civitai"):
                build_civitai_tab(studio, then_refresh)
            with gr.Tab("Train", id="train", elem_id="ld-tab-train"):
                build_train_tab(studio, then_refresh)
            with gr.Tab("Grid", id="grid", elem_id="ld-tab-grid"):
                build_grid_tab(studio)
            with gr.Tab("Tools", id="tools", elem_id="ld-tab-tools"):
                build_tools_tab(studio, then_refresh)

        def send_png(text: str):
            try:
                updates = gen.updates_from_infotext(text, name_for_hash(studio))
            except LoradeckError as exc:
                return [*(gr.skip() for _ in gen.form), status.error(str(exc)), gr.skip()]
            return [*updates, "", gr.Tabs(selected="generate")]

        png_send.click(send_png, png_text, [*gen.form, png_status, tabs], show_progress="hidden")

        def on_load(query: str, folder: str, order: str):
            """Each page load: the loaded model (loading the demo one if none is), the checkpoints, the cards."""
            try:
                model = studio.model
                current, family, note = model.title, model.family.value, ""
            except LoradeckError as exc:
                current, family, note = DEMO, None, status.error(str(exc))
            try:
                choices = checkpoint_choices(studio)
                catalog.refresh()
            except Exception as exc:  # noqa: BLE001 - an unreadable folder must not blank the page
                log.exception("library scan failed")
                choices, note = [DEMO], status.error(f"The library could not be scanned: {exc}")
            if current not in choices:
                choices.append(current)
            folders = folder_choices(catalog)
            return (
                gr.update(choices=choices, value=current),
                family,
                current,
                gr.update(choices=folders, value=folder if folder in folders else folders[0]),
                cards_html(catalog, query, folder, order, family),
                note,
            )

        blocks.load(
            on_load,
            gen.cards.filters,
            [gen.checkpoint, gen.family, gen.last_good, gen.cards.folder, gen.cards.grid, gen.status],
            show_progress="hidden",
        )
    return blocks


def mount_ui(app: Any, studio: Studio, *, path: str = "/") -> Any:
    """Mount the web UI on ``app`` (the server's FastAPI app) at ``path``; returns the app.

    Adds one route beside it, ``<path>/loradeck/ui/lora-preview?key=…``, that serves card thumbnails: only files the
    library found as LoRA previews, never an arbitrary path."""
    catalog = LoraCatalog(studio)
    blocks = build_ui(studio, catalog=catalog)
    prefix = path.rstrip("/")
    _add_preview_route(app, catalog, f"{prefix}/{PREVIEW_ROUTE}")
    return gr.mount_gradio_app(
        app,
        blocks,
        path=path,
        theme=theme(),
        css=CSS,
        js=SHORTCUTS_JS,
        ssr_mode=False,  # SSR would start a Node server on a second port
        pwa=False,
        mcp_server=False,
        footer_links=[],  # the API docs are FastAPI's /docs, linked in the header
        show_error=True,
    )


def _add_preview_route(app: Any, catalog: LoraCatalog, route: str) -> None:
    from fastapi import HTTPException
    from fastapi.responses import Response

    thumbnails = _Thumbnails()

    @app.get(route, include_in_schema=False)
    def lora_preview(key: str) -> Response:
        found = catalog.preview_path(key)
        if found is None:
            raise HTTPException(404, f"No preview for the LoRA {key!r}.")
        try:
            data = thumbnails.get(Path(found))
        except OSError as exc:
            raise HTTPException(404, f"The preview of {key!r} could not be read: {exc}") from None
        return Response(data, media_type="image/png", headers={"Cache-Control": "max-age=300"})


class _Thumbnails:
    """Card-sized PNGs of preview files, by path and mtime. Tiny pictures (the demo's 32 px) are enlarged with
    nearest-neighbour so they stay crisp; large ones are shrunk to at most 320 px."""

    SIDE = 320
    KEEP = 512

    def __init__(self) -> None:
        self._cache: OrderedDict[tuple[str, float], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path) -> bytes:
        key = (str(path), path.stat().st_mtime)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        data = self.render(path)
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self.KEEP:
                self._cache.popitem(last=False)
        return data

    def render(self, path: Path) -> bytes:
        with Image.open(path) as im:
            im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
            side = max(im.size)
            if side < self.SIDE // 2:
                factor = max(1, self.SIDE // side)
                im = im.resize((im.width * factor, im.height * factor), Image.Resampling.NEAREST)
            else:
                im.thumbnail((self.SIDE, self.SIDE), Image.Resampling.LANCZOS)
            out = io.BytesIO()
            im.save(out, format="PNG", optimize=False)
            return out.getvalue()
