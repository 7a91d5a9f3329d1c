"""Test material for the UI: a LoRA for the demo model with its sidecars, a real server on a free port."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors import safe_open
from safetensors.numpy import save_file

from loradeck.families import Family
from loradeck.lora import keymap_for_family
from loradeck.studio import demo_model_dir

WEIGHT_FILES = {"unet": "unet/diffusion_pytorch_model.safetensors", "te1": "text_encoder/model.safetensors"}


def write_demo_lora(path: Path, seed: int, *, rank: int = 2, scale: float = 0.1) -> Path:
    """A kohya LoRA over the demo model's modules: names from ``keymap_for_family(DEMO)``, each module's shape read
    from the demo model's weight files, random factors from ``seed``."""
    rng = np.random.default_rng(seed)
    handles = {c: safe_open(demo_model_dir() / f, "np") for c, f in WEIGHT_FILES.items()}
    tensors: dict[str, np.ndarray] = {}
    for name, ref in keymap_for_family(Family.DEMO).modules.items():
        shape = handles[ref.component].get_slice(ref.path + ".weight").get_shape()
        out_f, in_f, tail = shape[0], shape[1], list(shape[2:])
        down = rng.standard_normal([rank, in_f, *tail]) * scale
        up = rng.standard_normal([out_f, rank] + [1] * len(tail)) * scale
        tensors[f"{name}.lora_down.weight"] = down.astype(np.float32)
        tensors[f"{name}.lora_up.weight"] = up.astype(np.float32)
        tensors[f"{name}.alpha"] = np.array(float(rank), np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"ss_network_dim": str(rank), "ss_network_alpha": str(rank)})
    return path


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


@contextmanager
def running_server(app):
    """uvicorn on 127.0.0.1 on a port the OS picks; yields (base URL, port)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


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
