"""What every command shares: settings from flags, errors as one plain-text line on stderr, progress bars."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

console = Console(stderr=True)

ModelsDir = Annotated[
    Path | None, typer.Option("--models-dir", help="Checkpoint folder (default <home>/models/Stable-diffusion).")
]
LoraDir = Annotated[Path | None, typer.Option("--lora-dir", help="LoRA folder (default <home>/models/Lora).")]
EmbeddingsDir = Annotated[
    Path | None,
    typer.Option(
        "--embeddings-dir",
        help="An A1111 embeddings/ folder of textual-inversion files, scanned before <home>/models/embeddings.",
    ),
]


def run_app(app: typer.Typer, argv: list[str] | None = None) -> None:
    """Run the CLI. Every failure is ONE line on stderr and a non-zero exit; ``--debug`` (anywhere on the command
    line) re-raises instead, so the traceback shows."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    try:
        app(args=args, prog_name="loradeck", standalone_mode=False)
    except KeyboardInterrupt:
        error_line("interrupted", style="yellow", label="")
        sys.exit(130)
    except Exception as exc:
        # Typer vendors click (typer._click) and plain click may be in use too: match the classes by name.
        kinds = {cls.__name__ for cls in type(exc).__mro__}
        if "Exit" in kinds:
            sys.exit(getattr(exc, "exit_code", 0))
        if debug:
            raise
        if "Abort" in kinds:
            sys.exit(1)
        if "ClickException" in kinds:  # usage errors: the message, not the usage block
            error_line(f"{exc.format_message()} (see --help)")
            sys.exit(getattr(exc, "exit_code", 2))
        error_line(describe_exception(exc))
        sys.exit(1)


def describe_exception(exc: BaseException) -> str:
    """The sentence for ``exc``: a LoradeckError is already one; anything else is a bug or an OS error, shown as
    its type and first line with a pointer to ``--debug``."""
    from loradeck.errors import LoradeckError

    if isinstance(exc, LoradeckError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first} (run again with --debug for the traceback)"


def error_line(message: str, *, style: str = "bold red", label: str = "error: ") -> None:
    """One line on stderr: ``message`` as plain text (no markup, control characters escaped, never wrapped)."""
    from rich.text import Text

    from loradeck.text import one_line

    line = Text.assemble((label, style), one_line(message)) if label else Text(one_line(message), style=style)
    console.print(line, soft_wrap=True, highlight=False)


def plain(text: object, style: str = "") -> Text:
    """Text from a file, a sidecar, Civitai or a request, for rich output: never interpreted as markup."""
    from loradeck.text import one_line

    return Text(one_line(text), style=style)


def warn(message: object) -> None:
    console.print(Text.assemble(("warning: ", "yellow"), plain(message)), soft_wrap=True, highlight=False)


def make_studio(**overrides):
    from loradeck.services.studio import Studio

    return Studio(**overrides)
