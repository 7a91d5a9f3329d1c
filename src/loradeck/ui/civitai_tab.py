"""The Civitai tab: search (thumbnails, trigger words, base model), Download into the library, cards refreshed.

Everything goes through the studio: its Civitai client (URL, token) for searches, and a download job on its download
queue for a verified, resumable transfer with sidecars. The thumbnails load from Civitai's image host in the browser.
"""

from __future__ import annotations

import html
import time
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from loradeck.errors import LoradeckError
from loradeck.services.studio import Studio
from loradeck.services.types import LORA_TYPES, PERIODS, SORTS, CivitaiModel
from loradeck.ui import status
from loradeck.ui.generation import progress_html

ALL_LORAS = "LoRA (all kinds)"
TYPES = (ALL_LORAS, "LORA", "LoCon", "DoRA", "Checkpoint")
BASES = ("Any", "SD 1.5", "SD 2.1", "SDXL 1.0", "Pony", "Illustrious")
POLL_S = 0.25
DOWNLOAD_JS = """
element.addEventListener('click', (event) => {
  const button = event.target.closest('.ld-civitai-download');
  if (button && element.contains(button)) trigger('click', {version: button.dataset.version});
});
"""


def _size(kb: float | None) -> str:
    if kb is None:
        return "size unknown"
    return f"{kb / 1024:.1f} MB" if kb >= 1024 else f"{kb:.0f} KB"


def result_html(model: CivitaiModel, nsfw: bool) -> str:
    e = html.escape
    version = model.latest
    if version is None:
        return ""
    image = version.preview(nsfw)
    thumb = (
        f'<img src="{e(image.url)}" alt="" loading="lazy" referrerpolicy="no-referrer">'
        if image
        else '<div class="ld-placeholder"><small>no preview</small></div>'
    )
    file = version.primary_file
    words = "".join(f'<span class="ld-chip">{e(w)}</span>' for w in version.trained_words[:8]) or (
        '<span class="ld-none">no trigger words</span>'
    )
    facts = " · ".join(
        p
        for p in (
            e(model.type),
            e(version.base_model or "base model unknown"),
            e(_size(file.size_kb if file else None)),
            f"{model.download_count:,} downloads" if model.download_count is not None else "",
        )
        if p
    )
    early = '<span class="ld-mismatch">early access</span>' if version.early_access_ends else ""
    return (
        f'<div class="ld-civitai-item" data-model="{model.id}"><div class="ld-thumb">{thumb}</div>'
        f'<div class="ld-info"><div class="ld-name">{e(model.name)}</div>'
        f'<div class="ld-sub">{e(version.name)}{" by " + e(model.creator) if model.creator else ""} {early}</div>'
        f'<div class="ld-sub">{facts}</div><div class="ld-chips">{words}</div>'
        f'<button type="button" class="ld-civitai-download" data-version="{version.id}">⬇ Download</button>'
        f"</div></div>"
    )


def results_html(models: list[CivitaiModel], nsfw: bool, more: bool) -> str:
    if not models:
        return '<div class="ld-empty">Nothing found.</div>'
    tail = '<div class="ld-cards-head">More results: press “Load more”.</div>' if more else ""
    return '<div class="ld-civitai-results">' + "".join(result_html(m, nsfw) for m in models) + "</div>" + tail


@dataclass
class SearchState:
    """The query the "Load more" button continues, and the results so far."""

    query: str = ""
    filters: dict[str, Any] = field(default_factory=dict)
    models: list[CivitaiModel] = field(default_factory=list)
    cursor: str | None = None


def search_filters(kind: str, base: str, sort: str, period: str, nsfw: bool) -> dict[str, Any]:
    types = list(LORA_TYPES) if kind == ALL_LORAS else [kind]
    return {
        "types": types,
        "base_models": [] if base == "Any" else [base],
        "sort": sort or None,
        "period": period or None,
        "nsfw": bool(nsfw),
        "limit": 20,
    }


def build_civitai_tab(studio: Studio, on_installed: Any) -> tuple[Any, Any]:
    """The tab. ``on_installed`` = (fn, inputs, outputs) run after a download, to refresh the LoRA cards.
    Returns (the download event, the results component)."""
    with gr.Row(equal_height=True, elem_classes="ld-toolbar"):
        query = gr.Textbox(
            placeholder="Search Civitai…", show_label=False, elem_id="ld-civitai-query", scale=4, min_width=180
        )
        search = gr.Button("Search", variant="primary", elem_id="ld-civitai-search", scale=0, min_width=90)
    with gr.Row():
        kind = gr.Dropdown(list(TYPES), value=ALL_LORAS, label="Type", min_width=140)
        base = gr.Dropdown(list(BASES), value="Any", label="Base model", min_width=140)
        sort = gr.Dropdown(list(SORTS), value="Most Downloaded", label="Sort", min_width=140)
        period = gr.Dropdown(list(PERIODS), value="AllTime", label="Period", min_width=120)
        nsfw = gr.Checkbox(False, label="Show NSFW", min_width=120)
    progress = gr.HTML("", elem_id="ld-civitai-progress")
    status_box = gr.HTML("", elem_id="ld-civitai-status")
    results = gr.HTML(
        '<div class="ld-empty">Search for a style, a character, a concept…</div>',
        elem_id="ld-civitai-results",
        js_on_load=DOWNLOAD_JS,
    )
    more = gr.Button("Load more", visible=False, elem_id="ld-civitai-more", size="sm")
    state = gr.State(SearchState())

    def run_search(text: str, k: str, b: str, s: str, p: str, show_nsfw: bool, previous: SearchState, again: bool):
        current = previous if again else SearchState(text.strip(), search_filters(k, b, s, p, show_nsfw))
        try:
            with studio.civitai() as client:
                page = client.search(current.query or None, cursor=current.cursor, **current.filters)
        except LoradeckError as exc:
            return gr.skip(), gr.skip(), gr.skip(), status.error(str(exc))
        found = SearchState(current.query, current.filters, current.models + list(page.items), page.next_cursor)
        html_ = results_html(found.models, current.filters["nsfw"], bool(found.cursor))
        return found, html_, gr.update(visible=bool(found.cursor)), ""

    inputs = [query, kind, base, sort, period, nsfw, state]
    outputs = [state, results, more, status_box]
    search.click(lambda *a: run_search(*a, False), inputs, outputs)
    query.submit(lambda *a: run_search(*a, False), inputs, outputs)
    more.click(lambda *a: run_search(*a, True), inputs, outputs)

    def fetch(searched: SearchState, evt: gr.EventData):
        version = str((getattr(evt, "_data", None) or {}).get("version") or "")
        if not version.isdigit():
            yield {status_box: status.error("This result has no version to download.")}
            return
        chosen = next((m for m in searched.models if m.latest and str(m.latest.id) == version), None)
        label = f"{chosen.name} ({chosen.latest.name})" if chosen and chosen.latest else f"version {version}"
        started = time.monotonic()
        try:
            job = studio.submit_download(f"version:{version}", nsfw=searched.filters.get("nsfw", False))
        except LoradeckError as exc:
            yield {status_box: status.error(str(exc))}
            return
        yield {status_box: "", progress: progress_html(0, f"Downloading {label}…")}
        while not futures.wait([job.future], timeout=POLL_S).done:
            yield {progress: progress_html(*_transfer(job.progress.step, job.progress.total, started, label))}
        try:
            result = job.future.result()
        except Exception as exc:  # noqa: BLE001 - never a blank error
            sentence = str(exc) if isinstance(exc, LoradeckError) else f"The download of {label} failed: {exc}"
            yield {progress: progress_html(1, "Download failed", state="error"), status_box: status.error(sentence)}
            return
        note = "was already in the library" if result.already_present else "downloaded and verified (SHA256)"
        lines = [f"{result.path.name} {note}: it is in {result.path.parent}.", *result.warnings]
        yield {progress: progress_html(1, "Done", state="done"), status_box: status.status_html("ok", lines)}

    event = results.click(fetch, state, [progress, status_box], show_progress="hidden")
    fn, ins, outs = on_installed
    event.then(fn, ins, outs, show_progress="hidden")
    return event, results


def _transfer(done: int, total: int, started: float, label: str) -> tuple[float, str]:
    """(fraction, text) of a download in progress: bytes, speed and time left."""
    elapsed = max(time.monotonic() - started, 1e-3)
    speed = done / elapsed
    text = f"{label}: {done / 1e6:.1f} MB"
    if total:
        left = (total - done) / speed if speed > 0 else 0
        text += f" of {total / 1e6:.1f} MB · {speed / 1e6:.1f} MB/s · {left:.0f} s left"
        return done / total, text
    return 0.0, text + f" · {speed / 1e6:.1f} MB/s"
