"""The PNG info tab: drop a picture, read its generation parameters (PNG text chunk or EXIF), send them to Generate."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from loradeck.errors import LoradeckError
from loradeck.prompt.infotext import parse_infotext
from loradeck.prompt.pnginfo import read_infotext
from loradeck.ui import status

SHOWN_FIRST = ("Prompt", "Negative prompt")


def params_html(params: dict[str, Any]) -> str:
    """The parsed parameters as a two-column table, prompt and negative prompt first."""
    if not params:
        return ""
    keys = [k for k in SHOWN_FIRST if k in params] + [k for k in params if k not in SHOWN_FIRST]
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(params[k]))}</td></tr>"
        for k in keys
        if not k.endswith(("-1", "-2"))  # parse_infotext's split "Size-1"/"Size-2" repeat "Size"
    )
    return f'<table class="ld-params">{rows}</table>'


def read_picture(path: str | None) -> tuple[str, str, str]:
    """(infotext, parameters table, status) for a dropped picture."""
    if not path:
        return "", "", ""
    try:
        text = read_infotext(path)
    except LoradeckError as exc:
        return "", "", status.error(str(exc))
    except Exception as exc:  # noqa: BLE001 - a picture PIL cannot open: say so in the page
        return "", "", status.error(f"This file could not be read as a picture: {type(exc).__name__}: {exc}")
    if not text:
        return (
            "",
            "",
            status.info("This picture carries no generation parameters (no PNG text chunk, no EXIF comment)."),
        )
    try:
        table = params_html(parse_infotext(text))
    except LoradeckError as exc:
        return text, "", status.error(str(exc))
    return text, table, ""


def build_pnginfo_tab() -> tuple[Any, Any, Any, Any]:
    """The tab's components: (send button, infotext box, status box, image). The caller wires "send"."""
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            image = gr.Image(
                label="Drop a picture here",
                type="filepath",
                image_mode=None,  # keep the file as it is: converting it would drop its text chunks
                sources=["upload", "clipboard"],
                elem_id="ld-png-drop",
                height=320,
            )
        with gr.Column(scale=1, min_width=260):
            text = gr.Textbox(label="Parameters", lines=6, max_lines=20, elem_id="ld-png-text", buttons=["copy"])
            table = gr.HTML("", elem_id="ld-png-params")
            send = gr.Button("Send to Generate", variant="primary", elem_id="ld-png-send")
            status_box = gr.HTML("", elem_id="ld-png-status")
    image.change(read_picture, image, [text, table, status_box], show_progress="hidden")
    return send, text, status_box, image
