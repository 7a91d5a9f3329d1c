"""`loradeck lora …`: list, show, inspect, merge-into (the LoRA tools are in lora_tools.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from loradeck.cli.common import LoraDir, ModelsDir, console, make_studio, plain, warn

app = typer.Typer(help="The LoRA library and LoRA tools.", no_args_is_help=True)


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    models_dir: ModelsDir = None,
    lora_dir: LoraDir = None,
) -> None:
    """List the LoRAs in the library (scanning new or changed files)."""
    studio = make_studio(models_dir=models_dir, lora_dir=lora_dir)
    entries = studio.loras(on_progress=_scan_progress())
    # files the scan could not read are listed too, marked unreadable with the reason (they do not stop the list)
    unreadable = [e for e in studio.library.errors() if e.kind == "lora"]
    if as_json:
        rows = [e.to_dict() for e in entries]
        rows += [{"name": e.path.stem, "path": str(e.path), "unreadable": True, "error": e.message} for e in unreadable]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    from rich.table import Table

    table = Table("name", "alias", "family", "base model", "format", "trigger words", "weight", "hash")
    for e in entries:
        d = e.to_dict()
        cells = (
            d["name"],
            d["alias"] if d["alias"] != d["name"] else "",
            d["family"],
            d["base_model"] or "",
            d["format"] or "",
            ", ".join(d["trigger_words"]),
            f"{d['preferred_weight']:g}" if d["preferred_weight"] else "",
            (d["hashes"].get("autov3") or "")[:12],
        )
        table.add_row(*(plain(c) for c in cells))  # names and trigger words come from files: never markup
    for err in unreadable:
        table.add_row(plain(err.path.stem), "", plain("unreadable", "red"), "", "", plain(err.message), "", "")
    console.print(table)


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="LoRA name, alias or subfolder/name.")],
    models_dir: ModelsDir = None,
    lora_dir: LoraDir = None,
) -> None:
    """Everything the library knows about one LoRA, as JSON."""
    studio = make_studio(models_dir=models_dir, lora_dir=lora_dir)
    entry = studio.library.resolve_lora(name)
    print(json.dumps(entry.to_dict(), indent=2, ensure_ascii=False))


@app.command()
def inspect(
    file: Annotated[Path, typer.Argument(help="A LoRA file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Format, family, rank/alpha, module coverage and metadata of a LoRA file."""
    from loradeck.lora.inspect import inspect_lora

    info = inspect_lora(file)
    if as_json:
        print(json.dumps(info, indent=2, ensure_ascii=False, default=str))
        return
    for key, value in info.items():
        if key in ("coverage", "file_modules_matched_percent"):
            continue
        if key == "coverage_percent":  # of the family's trained set (kohya's defaults, + the conv set for LoCon)
            value = (
                f"{value:.1f} % ({info['modules_matched']} of {info['modules_total']} modules of the model); "
                f"{info['file_modules_matched_percent']:.1f} % of the file's {info['modules_in_file']} modules matched"
            )
        if isinstance(value, list) and len(value) > 8:
            value = ", ".join(map(str, value[:8])) + f", … ({len(value)} in all)"
        console.print(plain(key, "bold") + plain(f": {value}"), soft_wrap=True)  # file text is never markup


@app.command("merge-into")
def merge_into(
    checkpoint: Annotated[Path, typer.Option(help="Base single-file checkpoint.")],
    lora: Annotated[
        list[str], typer.Option(help="FILE:WEIGHT or FILE:WEIGHT:lbw=PRESET|VECTOR (block weights; repeatable).")
    ],
    out: Annotated[Path, typer.Option(help="Output .safetensors.")],
) -> None:
    """Bake LoRAs into a copy of a checkpoint, keeping its key layout."""
    from loradeck.lora.bake import merge_into_checkpoint
    from loradeck.lora.block_weights import load_presets, resolve
    from loradeck.settings import load_settings

    pairs = []
    for item in lora:
        head, sep, lbw = item.partition(":lbw=")
        path, _, weight = head.rpartition(":")
        if not path:
            path, weight = head, "1"
        try:
            w = float(weight)
        except ValueError:
            raise typer.BadParameter(f"--lora {item!r}: the weight after ':' must be a number") from None
        blocks = resolve(lbw, load_presets(load_settings().lbw_presets_path), f"--lora {item}") if sep else None
        pairs.append((Path(path), w, blocks))
    report = merge_into_checkpoint(checkpoint, pairs, out)
    for warning in report.warnings:
        warn(warning)
    print(out)


def _scan_progress():
    from rich.progress import Progress

    state: dict = {}

    def on_progress(done: int, total: int, path) -> None:
        if "bar" not in state and total > 20:
            state["bar"] = Progress(console=console, transient=True)
            state["bar"].start()
            state["task"] = state["bar"].add_task("scanning LoRAs", total=total)
        if "bar" in state:
            state["bar"].update(state["task"], completed=done)
            if done >= total:
                state["bar"].stop()

    return on_progress


from loradeck.cli import lora_tools  # noqa: E402, F401  (registers merge, resize, extract, convert on `app`)
