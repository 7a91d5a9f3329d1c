"""What every command shares: settings from flags, errors as one red sentence, progress bars."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True)

ModelsDir = Annotated[
    Path | None, typer.Option("--models-dir", help="Checkpoint folder (default <home>/models/Stable-diffusion).")
]
LoraDir = Annotated[Path | None, typer.Option("--lora-dir", help="LoRA folder (default <home>/models/Lora).")]


def run_app(app: typer.Typer) -> None:
    from loradeck.errors import LoradeckError

    try:
        app(standalone_mode=False)
    except LoradeckError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise


def make_studio(**overrides):
    from loradeck.services.studio import Studio

    return Studio(**overrides)
