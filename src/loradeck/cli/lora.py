"""`loradeck lora …`: list, show, inspect, merge-into (the LoRA tools are in lora_tools.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from loradeck.cli.common import LoraDir, ModelsDir, console, make_studio

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
    if as_json:
        print(json.dumps([e.to_dict() for e in entries], indent=2, ensure_ascii=False))
        return
    from rich.table import Table

    table = Table("name", "alias", "family", "format", "trigger words", "weight", "hash")
    for e in entries:
        d = e.to_dict()
        table.add_row(
            d["name"],
            d["alias"] if d["alias"] != d["name"] else "",
            d["family"],
            d["format"] or "",
            ", ".join(d["trigger_words"]),
            f"{d['preferred_weight']:g}" if d["preferred_weight"] else "",
            (d["hashes"].get("autov3") or "")[:12],
        )
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
        if isinstance(value, list) and len(value) > 8:
            value = ", ".join(map(str, value[:8])) + f", … ({len(value)} in all)"
        console.print(f"[bold]{key}[/]: {value}")


@app.command("merge-into")
def merge_into(
    checkpoint: Annotated[Path, typer.Option(help="Base single-file checkpoint.")],
    lora: Annotated[list[str], typer.Option(help="FILE:WEIGHT (repeatable).")],
    out: Annotated[Path, typer.Option(help="Output .safetensors.")],
) -> None:
    """Bake LoRAs into a copy of a checkpoint, keeping its key layout."""
    from loradeck.lora.bake import merge_into_checkpoint

    pairs = []
    for item in lora:
        path, _, weight = item.rpartition(":")
        if not path:
            path, weight = item, "1"
        try:
            pairs.append((Path(path), float(weight)))
        except ValueError:
            raise typer.BadParameter(f"--lora {item!r}: the weight after ':' must be a number") from None
    report = merge_into_checkpoint(checkpoint, pairs, out)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
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
