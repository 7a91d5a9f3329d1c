"""Test helpers: LoRAs for the demo model, a second checkpoint, a real uvicorn server on a free port."""

from __future__ import annotations

import base64
import io
import json
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from loradeck.families import Family
from loradeck.lora import keymap_for_family
from loradeck.studio import demo_model_dir

FILES = {"unet": "unet/diffusion_pytorch_model.safetensors", "te1": "text_encoder/model.safetensors"}


def write_demo_lora(path: Path, seed: int, *, rank: int = 4, scale: float = 0.15, alias: str | None = None) -> Path:
    """A kohya LoRA over every module of the demo model's keymap (names from ``keymap_for_family(DEMO)``, shapes
    read from the demo model's weight files), random weights from ``seed``."""
    rng = np.random.default_rng(seed)
    keymap = keymap_for_family(Family.DEMO)
    tensors: dict[str, np.ndarray] = {}
    handles = {c: safe_open(demo_model_dir() / f, "np") for c, f in FILES.items()}
    for name, ref in keymap.modules.items():
        shape = handles[ref.component].get_slice(ref.path + ".weight").get_shape()
        out_f, in_f, tail = shape[0], shape[1], list(shape[2:])
        tensors[f"{name}.lora_down.weight"] = (rng.standard_normal([rank, in_f, *tail]) * scale).astype(np.float32)
        tensors[f"{name}.lora_up.weight"] = (rng.standard_normal([out_f, rank] + [1] * len(tail)) * scale).astype(
            np.float32
        )
        tensors[f"{name}.alpha"] = np.array(float(rank), np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"ss_network_dim": str(rank), "ss_network_alpha": str(rank)}
    if alias:
        metadata["ss_output_name"] = alias
    save_file(tensors, str(path), metadata=metadata)
    return path


def write_variant_checkpoint(models_dir: Path, name: str = "demo-variant", factor: float = 1.5) -> Path:
    """A copy of the demo model as a diffusers folder, declared ``loradeck_family: demo``, with its U-Net output
    convolution scaled so it draws different pixels."""
    folder = models_dir / name
    shutil.copytree(demo_model_dir(), folder)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "loradeck_family": "demo"}))
    weights = folder / FILES["unet"]
    tensors = load_file(str(weights))
    tensors["conv_out.weight"] = tensors["conv_out.weight"] * np.float32(factor)
    save_file(tensors, str(weights))
    return folder


def b64_to_array(data: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


@contextmanager
def running_server(app):
    """uvicorn on 127.0.0.1, on a port the OS picks; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
