"""The Embeddings tab beside the LoRA cards: one card per textual-inversion embedding (name, family badge, vectors),
a search box and a rescan button. A click adds the embedding's name to the prompt or, with "Negative prompt" chosen,
to the negative prompt (where EasyNegative and its kind go); a second click takes it out again.

Like the LoRA cards, the grid is one ``gr.HTML`` whose script sends the clicked card's key back (``lora_cards``).
"""

from __future__ import annotations

import html
import re
from typing import Any

import gradio as gr

from loradeck.families import Family
from loradeck.ui import status
from loradeck.ui.catalog import _join
from loradeck.ui.lora_cards import CLICK_JS

TARGETS = ("Prompt", "Negative prompt")


def _occurrence(name: str) -> re.Pattern[str]:
    """The name as a word of its own (A1111 finds it by its tokens; inside a longer word it is another word), with
    the emphasis brackets around it if any: ``(name:1.2)``, ``(name)``, ``[name]``."""
    w = re.escape(name)
    return re.compile(rf"\(\s*{w}\s*(?::\s*[+-]?[\d.]+\s*)?\)|\[\s*{w}\s*\]|(?<![\w]){w}(?![\w])")


def toggle_name(text: str, name: str) -> str:
    """``text`` with ``name`` appended (after a comma), or without it (and the comma that joined it) when it is
    already there."""
    found = _occurrence(name).search(text)
    if found is None:
        return _join(text, name)
    before, after = text[: found.start()], text[found.end() :]
    if re.search(r",\s*$", before):
        before = re.sub(r",\s*$", "", before)
    else:
        after = re.sub(r"^\s*,", "", after)
    return re.sub(r"  +", " ", before + after).strip()


def card_html(entry: Any, model_family: Family | None) -> str:
    """One card of a ``loradeck.library.embeddings.EmbeddingEntry``."""
    e = html.escape
    family = Family(entry.family)
    fits = model_family is None or family is model_family
    badges = f'<span class="ld-family ld-fam-{e(family.value)}">{e(family.label)}</span>'
    if not fits:
        assert model_family is not None
        why = f"Made for {family.label}; the loaded model is {model_family.label}: it will be skipped."
        badges += f'<span class="ld-mismatch" title="{e(why)}">⚠ not for {e(model_family.label)}</span>'
    initials = "".join(w[0] for w in re.split(r"[\s_\-]+", entry.name) if w)[:2].upper() or "?"
    thumb = f'<div class="ld-placeholder" aria-hidden="true"><b>{e(initials)}</b><small>embedding</small></div>'
    vectors = f"{entry.vectors} vector" + ("" if entry.vectors == 1 else "s")
    sub = " · ".join(p for p in (entry.subfolder, f"hash {entry.short_hash}") if p)
    classes = "ld-card ld-emb-card" + ("" if fits else " ld-card-mismatch")
    return (
        f'<button type="button" class="{classes}" data-key="{e(entry.name)}" title="{e(f"Add {entry.name}")}">'
        f'<div class="ld-thumb">{thumb}<div class="ld-badges">{badges}</div></div>'
        f'<div class="ld-info"><div class="ld-name">{e(entry.name)}</div>'
        f'<div class="ld-sub">{e(sub)}</div><div class="ld-weight">{e(vectors)}</div></div></button>'
    )


def cards_html(studio: Any, query: str, family: str | None) -> str:
    """The embedding grid for a search, with a count line and the files the scan could not read."""
    everything = studio.embeddings()
    words = (query or "").lower().split()
    chosen = [x for x in everything if all(w in f"{x.name} {x.subfolder}".lower() for w in words)]
    model_family = Family(family) if family else None
    count = f"{len(chosen)} of {len(everything)} embeddings" if words else f"{len(everything)} embeddings"
    head = f'<div class="ld-cards-head">{html.escape(count)}</div>'
    errors = studio.embedding_library.errors()
    if errors:
        items = "".join(f"<li>{html.escape(x.message)}</li>" for x in errors)
        head += (
            f'<details class="ld-scan-errors"><summary>{len(errors)} file(s) could not be read</summary>'
            f"<ul>{items}</ul></details>"
        )
    if not chosen:
        where = html.escape(" or ".join(str(r) for r in studio.settings.embedding_roots))
        empty = (
            f"No embedding matches “{html.escape(query)}”."
            if everything
            else f"No embeddings yet: put textual-inversion files (.safetensors, .pt) in {where}."
        )
        return f'{head}<div class="ld-empty">{empty}</div>'
    return head + '<div class="ld-cards">' + "".join(card_html(x, model_family) for x in chosen) + "</div>"


def build_embedding_cards(studio: Any, prompt: Any, negative: Any, family: Any, status_box: Any) -> Any:
    """The Embeddings section and its events; returns its grid. ``family``: a State with the model's family value."""
    with gr.Row(elem_classes="ld-toolbar", equal_height=True):
        search = gr.Textbox(
            placeholder="Search embeddings by name or folder…", show_label=False, elem_id="ld-emb-search", scale=4
        )
        target = gr.Radio(list(TARGETS), value=TARGETS[1], show_label=False, elem_id="ld-emb-target", scale=2)
        refresh = gr.Button("↻ Rescan", elem_id="ld-emb-refresh", scale=0, min_width=110, size="md")
    # a callable value is computed at every page load; the model's family follows with the ``family`` State
    grid = gr.HTML(lambda: cards_html(studio, "", None), elem_id="ld-emb-cards", js_on_load=CLICK_JS)

    def render(query: str, fam: str | None) -> str:
        return cards_html(studio, query, fam)

    def rescan(query: str, fam: str | None):
        try:
            studio.embedding_library.refresh()
        except Exception as exc:  # noqa: BLE001 - the reason goes to the page, whatever it is
            return gr.skip(), status.error(f"Rescanning the embeddings failed: {exc}")
        return render(query, fam), status.info(f"Embeddings rescanned: {len(studio.embeddings())} found.")

    def click(where: str, prompt_text: str, negative_text: str, evt: gr.EventData):
        name = (getattr(evt, "_data", None) or {}).get("key")
        if not name or not any(x.name == name for x in studio.embeddings()):
            return gr.skip(), gr.skip(), status.error(f"The embedding {name!r} is no longer there; press Rescan.")
        if where == TARGETS[1]:
            return gr.skip(), toggle_name(negative_text or "", name), gr.skip()
        return toggle_name(prompt_text or "", name), gr.skip(), gr.skip()

    search.change(render, [search, family], grid, show_progress="hidden")
    family.change(render, [search, family], grid, show_progress="hidden")
    refresh.click(rescan, [search, family], [grid, status_box])
    grid.click(click, [target, prompt, negative], [prompt, negative, status_box], show_progress="hidden")
    return grid
