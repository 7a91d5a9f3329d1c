"""Server test helpers: a second checkpoint, decoding answers; shared ones re-exported from tests.helpers."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.numpy import load_file, save_file

from loradeck.demo.paths import demo_model_dir
from tests.helpers.loras import write_demo_lora  # noqa: F401  (re-exported for the server tests)
from tests.helpers.servers import running_server  # noqa: F401


def write_variant_checkpoint(models_dir: Path, name: str = "demo-variant", factor: float = 1.5) -> Path:
    """A copy of the demo model as a diffusers folder, declared ``loradeck_family: demo``, with its U-Net output
    convolution scaled so it draws different pixels."""
    folder = models_dir / name
    shutil.copytree(demo_model_dir(), folder)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "loradeck_family": "demo"}))
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(weights))
    tensors["conv_out.weight"] = tensors["conv_out.weight"] * np.float32(factor)
    save_file(tensors, str(weights))
    return folder


def b64_to_array(data: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
