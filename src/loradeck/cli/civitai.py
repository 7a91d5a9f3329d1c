"""`loradeck civitai …`: search, verified downloads, identifying local files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from loradeck.cli.common import LoraDir, ModelsDir, console, make_studio, plain, warn

app = typer.Typer(
    help="Search Civitai, download verified models with their sidecars, identify local files.", no_args_is_help=True
)

Url = Annotated[str | None, typer.Option("--civitai-url", help="API base URL (a mirror or a test server).")]
Token = Annotated[
    str | None, typer.Option("--token", help="Civitai API key (or CIVITAI_API_TOKEN).", show_default=False)
]


def _studio(civitai_url: str | None, token: str | None, **dirs):
    return make_studio(civitai_url=civitai_url, civitai_token=token, **dirs)


def _size(kb: float | None) -> str:
    if not kb:
        return ""
    return f"{kb / 1024:.0f} MB" if kb >= 1024 else f"{kb:.0f} KB"


@app.command()
def search(
    query: Annotated[str | None, typer.Argument(help="Words to search for.")] = None,
    type_: Annotated[
        list[str] | None, typer.Option("--type", help="LORA, LoCon, DoRA, Checkpoint, … (repeatable).")
    ] = None,
    base: Annotated[
        list[str] | None, typer.Option("--base", help='Base model, e.g. "SD 1.5", "SDXL 1.0" (repeatable).')
    ] = None,
    sort: Annotated[str | None, typer.Option(help='"Highest Rated", "Most Downloaded", "Newest".')] = None,
    period: Annotated[str | None, typer.Option(help="AllTime, Year, Month, Week, Day.")] = None,
    nsfw: Annotated[bool, typer.Option(help="Include NSFW models.")] = False,
    limit: Annotated[int, typer.Option(help="How many models to list.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    civitai_url: Url = None,
    token: Token = None,
) -> None:
    """Search Civitai's models (cursor pages are followed until --limit models are listed)."""
    from rich.table import Table

    models = []
    with _studio(civitai_url, token).civitai() as client:
        for page in client.search_pages(
            query, types=type_ or (), base_models=base or (), sort=sort, period=period, nsfw=nsfw, limit=min(limit, 100)
        ):
            models += page.items
            if len(models) >= limit:
                break
    models = models[:limit]
    rows = []
    for m in models:
        v = m.latest
        f = v.primary_file if v else None
        rows.append({
            "model_id": m.id, "model": m.name, "version_id": v.id if v else None, "version": v.name if v else "",
            "type": m.type, "base_model": v.base_model if v else None,
            "trigger_words": list(v.trained_words) if v else [],
            "size_kb": f.size_kb if f else None, "downloads": m.download_count,
        })  # fmt: skip
    if as_json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table = Table("id", "model", "version", "type", "base", "trigger words", "size", "downloads")
    for r in rows:
        cells = (str(r["model_id"]), r["model"], f"{r['version']} ({r['version_id']})", r["type"],
                 r["base_model"] or "", ", ".join(r["trigger_words"])[:40], _size(r["size_kb"]),
                 str(r["downloads"] or ""))  # fmt: skip
        table.add_row(*(plain(c) for c in cells))  # Civitai text is never markup
    console.print(table)


@app.command()
def download(
    ref: Annotated[str, typer.Argument(help="Model page URL, download URL, model id or version id.")],
    version: Annotated[int | None, typer.Option(help="Version id (default: the latest).")] = None,
    file: Annotated[int | None, typer.Option("--file", help="File id (default: the primary file).")] = None,
    to: Annotated[
        Path | None, typer.Option(help="Destination folder (default: models/Lora or models/Stable-diffusion).")
    ] = None,
    nsfw: Annotated[bool, typer.Option(help="Allow an NSFW preview image.")] = False,
    models_dir: ModelsDir = None,
    lora_dir: LoraDir = None,
    civitai_url: Url = None,
    token: Token = None,
) -> None:
    """Download a model: resumable, SHA256-verified, installed atomically with its sidecars."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    studio = _studio(civitai_url, token, models_dir=models_dir, lora_dir=lora_dir)
    with Progress(TextColumn("downloading"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as bar:  # fmt: skip
        task = bar.add_task("download", total=None)
        result = studio.download(
            ref, to=to, version_id=version, file_id=file, nsfw=nsfw,
            on_progress=lambda p: bar.update(task, completed=p.step, total=p.total or None),
        )  # fmt: skip
    for warning in result.warnings:
        warn(warning)
    note = (
        "already present, hash verified"
        if result.already_present
        else "verified"
        if result.verified
        else "NOT verified"
    )
    console.print(plain(result.path, "green") + f" ({note})", soft_wrap=True)
    if result.version.trained_words:
        console.print(plain(f"trigger words: {', '.join(result.version.trained_words)}"), soft_wrap=True)
    print(result.path)


@app.command()
def identify(
    paths: Annotated[list[Path] | None, typer.Argument(help="Files or folders (default: the LoRA folder).")] = None,
    nsfw: Annotated[bool, typer.Option(help="Allow NSFW preview images.")] = False,
    no_sidecars: Annotated[bool, typer.Option("--no-sidecars", help="Only report; write nothing.")] = False,
    lora_dir: LoraDir = None,
    civitai_url: Url = None,
    token: Token = None,
) -> None:
    """Find local files on Civitai by hash (SHA256, then AutoV3) and write their sidecars."""
    studio = _studio(civitai_url, token, lora_dir=lora_dir)
    report = studio.identify(paths, nsfw=nsfw, write_sidecars=not no_sidecars)
    for item in report.matched:
        v = item.version
        line = f" {item.path.name}: {v.model_name} — {v.name} ({v.base_model}) by {item.matched_by}"
        console.print(plain("found", "green") + plain(line), soft_wrap=True)
    for path in report.unmatched:
        console.print(plain("not on Civitai ", "yellow") + plain(path.name), soft_wrap=True)
    for path, why in report.failed:
        console.print(plain("failed ", "red") + plain(f"{path.name}: {why}"), soft_wrap=True)
