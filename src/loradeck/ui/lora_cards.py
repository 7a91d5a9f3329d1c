"""The LoRA cards: preview (or a placeholder), name, family badge, trigger words, preferred weight; search, folder
filter, sort, refresh. A click adds the card's tag and activation text to the prompt (a second click removes them).

The cards are one ``gr.HTML`` whose script sends the clicked card's key back with ``trigger('click', {key})``: one
component for the whole library, however large, instead of a component per card.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import gradio as gr

from loradeck.families import Family
from loradeck.ui import status
from loradeck.ui.catalog import ALL_FOLDERS, SORTS, Card, LoraCatalog, folders, select_cards, toggle_card

PREVIEW_ROUTE = "loradeck/ui/lora-preview"  # relative: resolves under the UI's own mount point (see app.py)
CLICK_JS = """
element.addEventListener('click', (event) => {
  const card = event.target.closest('.ld-card');
  if (card && element.contains(card)) trigger('click', {key: card.dataset.key});
});
"""


def preview_url(card: Card) -> str:
    return f"{PREVIEW_ROUTE}?key={quote(card.key, safe='')}&v={int(card.mtime)}"


def _initials(card: Card) -> str:
    words = [w for w in card.alias.replace("_", " ").replace("-", " ").split() if w]
    return "".join(w[0] for w in words[:2]).upper() or "?"


def card_html(card: Card, model_family: Family | None) -> str:
    e = html.escape
    warning = card.mismatch(model_family)
    if card.has_preview:
        thumb = f'<img src="{e(preview_url(card))}" alt="" loading="lazy">'
    else:
        thumb = (
            f'<div class="ld-placeholder" aria-hidden="true"><b>{e(_initials(card))}</b><small>no preview</small></div>'
        )
    badges = (
        f'<span class="ld-family ld-fam-{e(card.family.value)}" title="{e(card.family.label)}">{e(card.badge)}</span>'
    )
    if warning:
        badges += f'<span class="ld-mismatch" title="{e(warning)}">⚠ not for {e(model_family.label)}</span>'
    sub = " · ".join(p for p in (card.name if card.name != card.alias else "", card.subfolder) if p)
    words = "".join(f'<span class="ld-chip">{e(w)}</span>' for w in card.trigger_words[:6])
    if len(card.trigger_words) > 6:
        words += f'<span class="ld-chip ld-more">+{len(card.trigger_words) - 6}</span>'
    weight = f"weight {card.weight:g}" + ("" if card.preferred_weight else " (default)")
    title = f"Add {card.tag}" + (f" and “{card.activation_text}”" if card.activation_text else "") + " to the prompt"
    classes = "ld-card" + (" ld-card-mismatch" if warning else "")
    return (
        f'<button type="button" class="{classes}" data-key="{e(card.key)}" title="{e(title)}">'
        f'<div class="ld-thumb">{thumb}<div class="ld-badges">{badges}</div></div>'
        f'<div class="ld-info"><div class="ld-name">{e(card.alias)}</div>'
        + (f'<div class="ld-sub">{e(sub)}</div>' if sub else "")
        + (f'<div class="ld-chips">{words}</div>' if words else '<div class="ld-chips ld-none">no trigger words</div>')
        + f'<div class="ld-weight">{e(weight)}</div></div></button>'
    )


def cards_html(catalog: LoraCatalog, query: str, folder: str, sort: str, family: str | None) -> str:
    """The whole card grid for a search, with a count line and the files the scan could not read."""
    everything = catalog.cards()
    chosen = select_cards(everything, query or "", folder or ALL_FOLDERS, sort or SORTS[0])
    model_family = Family(family) if family else None
    count = f"{len(chosen)} of {len(everything)} LoRAs" if len(chosen) != len(everything) else f"{len(chosen)} LoRAs"
    head = f'<div class="ld-cards-head">{html.escape(count)}</div>'
    if catalog.errors:
        items = "".join(f"<li>{html.escape(m)}</li>" for m in catalog.errors)
        head += f'<details class="ld-scan-errors"><summary>{len(catalog.errors)} file(s) could not be read</summary><ul>{items}</ul></details>'
    if not chosen:
        where = html.escape(str(catalog.studio.settings.lora_path))
        empty = (
            f"No LoRA matches “{html.escape(query)}”."
            if everything
            else f"No LoRAs yet: put .safetensors files in {where} (or download one from the Civitai tab)."
        )
        return f'{head}<div class="ld-empty">{empty}</div>'
    return head + '<div class="ld-cards">' + "".join(card_html(c, model_family) for c in chosen) + "</div>"


@dataclass
class CardsSection:
    search: Any
    folder: Any
    sort: Any
    refresh: Any
    grid: Any

    @property
    def filters(self) -> list[Any]:
        return [self.search, self.folder, self.sort]


def build_cards(catalog: LoraCatalog, prompt: Any, negative: Any, family: Any, status_box: Any) -> CardsSection:
    """The card section and its events. ``family`` is a State with the loaded model's family value."""
    with gr.Row(elem_classes="ld-toolbar", equal_height=True):
        search = gr.Textbox(
            placeholder="Search LoRAs by name, folder or trigger word…",
            show_label=False,
            elem_id="ld-lora-search",
            scale=4,
            min_width=180,
        )
        folder = gr.Dropdown(
            [ALL_FOLDERS], value=ALL_FOLDERS, show_label=False, elem_id="ld-lora-folder", scale=2, min_width=130
        )
        sort = gr.Dropdown(
            list(SORTS), value=SORTS[0], show_label=False, elem_id="ld-lora-sort", scale=1, min_width=120
        )
        refresh = gr.Button("↻ Rescan", elem_id="ld-lora-refresh", scale=0, min_width=110, size="md")
    grid = gr.HTML('<div class="ld-empty">Loading the library…</div>', elem_id="ld-lora-cards", js_on_load=CLICK_JS)
    section = CardsSection(search, folder, sort, refresh, grid)

    def render(query: str, folder_name: str, order: str, fam: str | None) -> str:
        return cards_html(catalog, query, folder_name, order, fam)

    def rescan(query: str, folder_name: str, order: str, fam: str | None):
        try:
            catalog.refresh()
        except Exception as exc:  # noqa: BLE001 - the reason goes to the page, whatever it is
            return gr.skip(), gr.skip(), status.error(f"Rescanning the library failed: {exc}")
        choices = folders(catalog.cards())
        folder_name = folder_name if folder_name in choices else ALL_FOLDERS
        return (
            gr.update(choices=choices, value=folder_name),
            render(query, folder_name, order, fam),
            status.info(f"Library rescanned: {len(catalog.cards())} LoRAs."),
        )

    def click(prompt_text: str, negative_text: str, evt: gr.EventData):
        key = (getattr(evt, "_data", None) or {}).get("key")
        card = catalog.get(key) if key else None
        if card is None:
            return gr.skip(), gr.skip(), status.error(f"The LoRA {key!r} is no longer in the library; press Rescan.")
        new_prompt, new_negative = toggle_card(prompt_text or "", negative_text or "", card)
        return new_prompt, new_negative, gr.skip()

    inputs = [search, folder, sort, family]
    search.change(render, inputs, grid, show_progress="hidden")
    folder.change(render, inputs, grid, show_progress="hidden")
    sort.change(render, inputs, grid, show_progress="hidden")
    refresh.click(rescan, inputs, [folder, grid, status_box])
    grid.click(click, [prompt, negative], [prompt, negative, status_box], show_progress="hidden")
    return section


def folder_choices(catalog: LoraCatalog) -> list[str]:
    return folders(catalog.cards())
