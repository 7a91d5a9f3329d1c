"""A home for the security tests (issue 19): a LoRA, a dataset, and a sentinel folder outside it."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image

from tests.helpers.loras import write_demo_lora
from tests.train.conftest import draw_pictures


def png_b64(size=(16, 16)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def make_home(tmp_path: Path) -> dict:
    home = tmp_path / "home"
    lora_dir, models_dir, datasets = home / "models" / "Lora", home / "models" / "Stable-diffusion", home / "datasets"
    write_demo_lora(lora_dir / "red.safetensors", seed=1)
    (lora_dir / "red.preview.png").write_bytes(base64.b64decode(png_b64()))
    models_dir.mkdir(parents=True)
    draw_pictures(datasets / "pics" / "2_shapes", 2)
    outside = tmp_path / "outside"  # the sentinel: nothing may read it, probe it or index it
    return {"home": home, "lora_dir": lora_dir, "models_dir": models_dir, "datasets": datasets, "outside": outside}


def fill_outside(outside: Path) -> None:
    write_demo_lora(outside / "secret.safetensors", seed=2)  # a real model file: the old code indexed it
    (outside / "secret.preview.png").write_bytes(base64.b64decode(png_b64()))
    draw_pictures(outside / "pics" / "2_shapes", 2)


def txt2img_body(**fields) -> dict:
    return {"prompt": "a", "steps": 1, "width": 64, "height": 64} | fields
