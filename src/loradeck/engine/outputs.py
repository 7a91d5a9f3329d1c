"""Where generated pictures go: A1111's folder layout and file names."""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import tempfile
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
    """Write ``NNNNN-SEED.png`` with the infotext in its ``parameters`` chunk; never overwrite a file.

    The PNG is written whole to a hidden ``.*.png.part`` in the same folder, then hard-linked to its numbered name
    (a link fails if the name exists, so two writers never share a name): a process killed mid-write leaves at
    most the hidden part, never a truncated picture under a name a gallery or A1111 would show.
    """
    from loradeck.prompt.pnginfo import save_with_infotext

    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    save_with_infotext(image, buf, infotext, format="PNG")
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".png.part", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; pictures are shared like A1111's
        with os.fdopen(fd, "wb") as fh:
            fh.write(buf.getvalue())
        number = next_number(folder)
        while True:
            path = folder / f"{number:05d}-{seed}.png"
            try:
                os.link(tmp, path)
                return path
            except FileExistsError:
                number += 1
            except OSError:  # a filesystem without hard links (FAT, some shares): exclusive create instead
                return _write_exclusive(folder, number, seed, buf.getvalue())
    finally:
        Path(tmp).unlink(missing_ok=True)


def _write_exclusive(folder: Path, number: int, seed: int, data: bytes) -> Path:
    while True:
        path = folder / f"{number:05d}-{seed}.png"
        try:
            with open(path, "xb") as fh:
                fh.write(data)
            return path
        except FileExistsError:
            number += 1


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once at import, before any server thread starts
    os.umask(mask)
    return mask


_UMASK = _read_umask()
