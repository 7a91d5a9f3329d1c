"""Where generated pictures go: A1111's folder layout and file names."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

from PIL import Image

_NUMBERED = re.compile(r"^(\d+)-")


def output_folder(outputs: Path, kind: str = "txt2img", day: dt.date | None = None) -> Path:
    """``<outputs>/txt2img-images/YYYY-MM-DD`` (or img2img-images)."""
    day = day or dt.date.today()
    return outputs / f"{kind}-images" / day.isoformat()


def next_number(folder: Path) -> int:
    """A1111 numbers files 00000, 00001, … by the highest number already in the folder."""
    highest = -1
    if folder.is_dir():
        for name in os.listdir(folder):
            m = _NUMBERED.match(name)
            if m:
                highest = max(highest, int(m.group(1)))
    return highest + 1


def save_png(image: Image.Image, folder: Path, seed: int, infotext: str) -> Path:
    """Write ``NNNNN-SEED.png`` with the infotext in its ``parameters`` chunk; never overwrite a file."""
    from loradeck.prompt.pnginfo import save_with_infotext

    folder.mkdir(parents=True, exist_ok=True)
    number = next_number(folder)
    while True:
        path = folder / f"{number:05d}-{seed}.png"
        try:
            with open(path, "xb") as fh:  # exclusive: two writers never share a name
                save_with_infotext(image, fh, infotext, format="PNG")
            return path
        except FileExistsError:
            number += 1
