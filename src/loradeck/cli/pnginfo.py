"""`loradeck png-info`: the generation settings stored in a picture."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def png_info(
    file: Annotated[Path, typer.Argument(help="A PNG (or JPEG/WebP) written by loradeck, A1111, Forge or Civitai.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the parsed fields as JSON (A1111's keys).")] = False,
) -> None:
    """Print the infotext of a picture, or its parsed fields with --json."""
    from loradeck.errors import FormatError
    from loradeck.prompt.infotext import parse_infotext
    from loradeck.prompt.pnginfo import read_infotext

    text = read_infotext(file)
    if text is None:
        raise FormatError(file, "has no generation parameters (no PNG 'parameters' chunk or EXIF UserComment)")
    print(json.dumps(parse_infotext(text), indent=2, ensure_ascii=False) if as_json else text)
