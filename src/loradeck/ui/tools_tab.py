"""The Tools tab: merge, resize, extract or convert library LoRAs; the result lands in the LoRA folder.

``tool_request`` turns the form into a ``loradeck.tools`` request (library names resolved, output in the LoRA
folder) and ``run_form`` runs it and says what was done; both are plain functions, tested without a browser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from loradeck.errors import InvalidRequest, LoradeckError
from loradeck.ui import status

TOOLS = ("merge", "resize", "extract", "convert")


def _int(value) -> int | None:
    return None if value in (None, "", 0) else int(value)


def _pairs(studio: Any, text: str) -> list[tuple[Path, float]]:
    """``stripy:0.6, inky:0.4`` → [(path, weight)] (weight 1 when left out)."""
    pairs = []
    for item in (t.strip() for t in (text or "").split(",")):
        if not item:
            continue
        name, _, weight = item.rpartition(":") if ":" in item else (item, "", "1")
        try:
            w = float(weight)
        except ValueError:
            raise InvalidRequest(f"{item!r}: the weight after ':' must be a number.") from None
        pairs.append((Path(studio.library.resolve_lora(name.strip()).path), w))
    if not pairs:
        raise InvalidRequest("Name at least one LoRA (e.g. stripy:0.6, inky:0.4).")
    return pairs


def _checkpoint(studio: Any, name: str) -> Path:
    name = (name or "").strip()
    if name in ("", "demo"):
        return Path("demo")
    return Path(studio.library.resolve_checkpoint(name).path)


def tool_request(studio: Any, tool: str, loras: str, rank, conv_rank, dynamic: str, param, base: str, tuned: str,
                 to: str, name: str):  # fmt: skip
    from loradeck.services.types import ConvertRequest, ExtractRequest, MergeRequest, ResizeRequest

    out = {"lora_dir": studio.settings.lora_path, "name": (name or "").strip() or None}
    if tool == "merge":
        return MergeRequest(inputs=_pairs(studio, loras), rank=_int(rank), conv_rank=_int(conv_rank), **out)
    if tool == "resize":
        (src, _), *_rest = _pairs(studio, loras)
        method = None if dynamic in (None, "", "fixed rank") else dynamic
        return ResizeRequest(input=src, rank=_int(rank), conv_rank=_int(conv_rank), method=method,
                             param=float(param) if method and param else None, **out)  # fmt: skip
    if tool == "extract":
        return ExtractRequest(base=_checkpoint(studio, base), tuned=_checkpoint(studio, tuned), rank=_int(rank) or 4,
                              conv_rank=_int(conv_rank) or 0, **out)  # fmt: skip
    if tool == "convert":
        (src, _), *_rest = _pairs(studio, loras)
        return ConvertRequest(input=src, to=to or "kohya", **out)
    raise InvalidRequest(f"unknown tool {tool!r} (use {', '.join(TOOLS)}).")


def describe(result) -> str:
    lines = [f"{result.tool}: wrote {result.path.name} ({result.modules} modules, rank {result.rank}) "
             f"in {result.seconds:.1f} s on {result.device}."]  # fmt: skip
    if result.retained is not None:
        lines.append(f"Retained Frobenius share overall: {result.retained:.4f}.")
    lines += result.notes[:20]
    return status.status_html("ok", lines)


def run_form(studio: Any, *form, on_progress=None) -> str:
    """Run the form's tool as a job on the studio's queue (it waits for a running generation)."""
    try:
        result = studio.run_tool(tool_request(studio, *form), on_progress=on_progress)
    except LoradeckError as exc:
        return status.error(str(exc))
    return describe(result)


def build_tools_tab(studio: Any, on_done: tuple | None = None) -> None:
    """The tab's components and events. ``on_done`` = (fn, inputs, outputs) run after a file is written."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=280):
            tool = gr.Radio(list(TOOLS), value="merge", label="Tool", elem_id="ld-tools-tool")
            loras = gr.Textbox(label="LoRAs (name:weight, comma-separated; resize/convert use the first)",
                               placeholder="stripy:0.6, inky:0.4", elem_id="ld-tools-loras")  # fmt: skip
            with gr.Row():
                rank = gr.Number(label="Rank (merge: empty = exact concat)", value=None, precision=0, minimum=0)
                conv_rank = gr.Number(label="Conv rank", value=None, precision=0, minimum=0)
            with gr.Row():
                dynamic = gr.Dropdown(["fixed rank", "sv_fro", "sv_ratio", "sv_cumulative"], value="fixed rank",
                                      label="Resize method")  # fmt: skip
                param = gr.Number(label="Method parameter", value=0.9)
                to = gr.Dropdown(["kohya", "peft", "comfy"], value="kohya", label="Convert to")
            with gr.Row():
                base = gr.Textbox(label="Extract: base checkpoint", value="demo")
                tuned = gr.Textbox(label="Extract: tuned checkpoint")
            name = gr.Textbox(label="Output name (empty: made from the inputs)", elem_id="ld-tools-name")
            start = gr.Button("Run", variant="primary", elem_id="ld-tools-run")
        with gr.Column(scale=2, min_width=260):
            box = gr.HTML(elem_id="ld-tools-status")

    def run(*form, progress=gr.Progress()):  # noqa: B008  (gradio's way to get a progress bar)
        return run_form(studio, *form, on_progress=lambda p: progress(p.step / max(1, p.total), p.note))

    event = start.click(run, [tool, loras, rank, conv_rank, dynamic, param, base, tuned, to, name], box,
                        concurrency_limit=1)  # fmt: skip
    if on_done is not None:
        event.then(*on_done)
