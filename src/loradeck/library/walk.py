"""Finding model files under a folder the way A1111 lists them.

A1111 walks recursively following symlinks, skips hidden folders, and sorts folders (by full path) and then the
files inside each folder with a natural sort ("v2" before "v10", case-insensitive). We do the same, but remember the
real folders we have entered so a symlink pointing back up the tree cannot loop forever.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LORA_EXTS = (".safetensors", ".pt", ".ckpt")
CHECKPOINT_EXTS = (".safetensors", ".ckpt")
DIFFUSERS_MARKER = "model_index.json"

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> list[int | str]:
    """Sort key: digit runs compare as numbers, the rest case-insensitively."""
    return [int(part) if part.isdigit() else part.lower() for part in _DIGITS.split(text)]


@dataclass(frozen=True)
class Found:
    """One model found: a file, or a diffusers folder. ``siblings`` = file names in its folder (for sidecars)."""

    path: Path
    stat: os.stat_result
    siblings: frozenset[str]
    is_dir: bool = False


def walk_models(root: Path, exts: tuple[str, ...], *, diffusers_dirs: bool = False) -> list[Found]:
    """Every model under ``root`` in A1111's order. ``diffusers_dirs``: folders holding model_index.json count as
    one model each and are not searched further (their unet/ weights are parts, not checkpoints)."""
    folders = sorted(_folders(root, diffusers_dirs), key=lambda f: natural_key(str(f[0])))
    out: list[Found] = []
    for folder, files, model_dirs in folders:
        siblings = frozenset(files)
        items = [(name, False) for name in files if name.lower().endswith(exts)]
        items += [(name, True) for name in model_dirs]
        for name, is_dir in sorted(items, key=lambda it: natural_key(it[0])):
            path = folder / name
            try:
                st = path.stat()  # only models are stat-ed: sidecars and previews need just their names
            except OSError:
                continue  # a dangling symlink or a file removed while we looked
            out.append(Found(path, st, siblings, is_dir))
    return out


def _folders(root: Path, diffusers_dirs: bool) -> Iterator[tuple[Path, list[str], list[str]]]:
    """Yield (folder, file names, diffusers subfolder names) for every visible folder."""
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = folder.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue  # a symlink back to a folder we already walked
        seen.add((st.st_dev, st.st_ino))
        files, model_dirs = [], []
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir():  # follows symlinks
                    if entry.name.startswith("."):
                        continue
                    sub = folder / entry.name
                    if diffusers_dirs and (sub / DIFFUSERS_MARKER).is_file():
                        model_dirs.append(entry.name)
                    else:
                        stack.append(sub)
                elif entry.is_file():
                    files.append(entry.name)
            except OSError:
                continue  # a dangling symlink or a file removed while we looked
        yield folder, files, model_dirs
