"""Where the embedded demo model and its LoRAs live inside the installed package."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from loradeck.errors import ModelLoadError

DEMO = "demo"  # the demo model's name everywhere: checkpoint title, infotext "Model", --checkpoint demo
_HERE = Path(__file__).parent


def demo_model_dir() -> Path:
    path = _HERE / "model"
    if not (path / "model_index.json").is_file():
        raise ModelLoadError(f"The embedded demo model is missing from {path}; reinstall loradeck.")
    return path


def demo_lora_dir() -> Path:
    return _HERE / "loras"


@cache
def demo_model_hash() -> str:
    """AutoV2-style short hash of the demo U-Net weights, so infotexts name the exact model."""
    from loradeck.formats.hashes import sha256_file

    return sha256_file(demo_model_dir() / "unet" / "diffusion_pytorch_model.safetensors")[:10]


@cache
def demo_native_size() -> int:
    """The demo model's own picture size (U-Net sample size × the VAE's downscale), from its configs."""
    root = demo_model_dir()
    unet = json.loads((root / "unet" / "config.json").read_text())
    vae = json.loads((root / "vae" / "config.json").read_text())
    return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
