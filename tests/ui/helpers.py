"""Test material for the UI: a LoRA for the demo model with its sidecars, a real server on a free port."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from tests.helpers.loras import write_demo_lora  # noqa: F401  (re-exported for the UI tests)


def write_sidecars(path: Path, *, activation: str, weight: float, negative: str = "", preview: bool = True) -> None:
    """A1111's ``name.json`` (activation text, preferred weight, negative text) and a 32 px ``name.preview.png``."""
    doc = {
        "description": "",
        "sd version": "Unknown",
        "activation text": activation,
        "preferred weight": weight,
        "negative text": negative,
        "notes": "",
    }
    path.with_suffix(".json").write_text(json.dumps(doc))
    if preview:
        y, x = np.mgrid[0:32, 0:32]
        rgb = np.stack([(x * 8) % 256, (y * 8) % 256, ((x // 4 + y // 4) % 2) * 255], axis=-1).astype(np.uint8)
        Image.fromarray(rgb).save(path.with_name(path.stem + ".preview.png"))


def listening_ports() -> set[int]:
    """TCP ports this process listens on (from /proc: socket inodes of our fds matched with LISTEN rows)."""
    import os

    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A = LISTEN
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports
