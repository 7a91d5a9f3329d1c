"""The status box under each action: what happened, in one sentence, escaped. Errors stay visible in the page
(a toast alone disappears before people read it)."""

from __future__ import annotations

import html
from collections.abc import Iterable

import gradio as gr


def status_html(kind: str, lines: Iterable[str]) -> str:
    """``kind`` = error | warning | info | ok; one ``<li>`` per line (a single line is a paragraph)."""
    items = [str(line) for line in lines if str(line).strip()]
    if not items:
        return ""
    title = {"error": "Error", "warning": "Warning", "info": "", "ok": ""}.get(kind, "")
    head = f'<strong class="ld-status-title">{title}</strong>' if title else ""
    if len(items) == 1:
        body = f"<p>{html.escape(items[0])}</p>"
    else:
        body = "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"
    return (
        f'<div class="ld-status ld-status-{kind}" role="{"alert" if kind == "error" else "status"}">{head}{body}</div>'
    )


def error(message: str) -> str:
    """The error box, and the same sentence as a toast (``gr.Warning``: it never blanks the page)."""
    gr.Warning(message)
    return status_html("error", [message])


def warnings(lines: Iterable[str]) -> str:
    return status_html("warning", lines)


def info(message: str) -> str:
    return status_html("info", [message])


def ok(message: str) -> str:
    return status_html("ok", [message])


def generation(notes: Iterable[str], coverage: Iterable) -> str:
    """The status under a finished generation: an error box for LoRAs that changed nothing (no module matched,
    other family, not found), the other warnings, and one coverage line per applied LoRA (lora/coverage.py)."""
    coverage = list(coverage)
    errors = [c.line() for c in coverage if c.error]
    said = {e.rstrip(".") for e in errors}
    rest = [n for n in notes if str(n).rstrip(".") not in said]
    return (
        status_html("error", errors)
        + status_html("warning", rest)
        + status_html("info", [c.line() for c in coverage if not c.error])
    )
