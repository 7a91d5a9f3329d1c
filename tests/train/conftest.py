"""Training tests run a few steps on a copy of the embedded demo model with pictures drawn by the test."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from loradeck.demo.shapes import random_scene, render
from loradeck.train import TrainConfig


def _copy_demo(dest: Path) -> Path:
    """Copy the demo model folder; retry, since a rebuild may replace it while we copy."""
    from loradeck.demo.paths import demo_model_dir

    for attempt in range(5):
        try:
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(demo_model_dir(), dest)
            return dest
        except (OSError, shutil.Error):
            time.sleep(1 + attempt)
    raise RuntimeError("could not copy the demo model")


@pytest.fixture(scope="session")
def demo_base(tmp_path_factory) -> Path:
    return _copy_demo(tmp_path_factory.mktemp("base") / "demo")


def draw_pictures(folder: Path, n: int, seed: int = 0, caption_ext: str = ".txt") -> list[str]:
    """``n`` 32×32 shape pictures with their captions; returns the captions."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    captions = []
    for i in range(n):
        scene = random_scene(rng)
        Image.fromarray(render(scene)).save(folder / f"pic{i}.png")
        (folder / f"pic{i}{caption_ext}").write_text(scene.caption)
        captions.append(scene.caption)
    return captions


@pytest.fixture
def shapes_data(tmp_path) -> Path:
    data = tmp_path / "data"
    draw_pictures(data / "2_shapes", 4)
    return data


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_config(data: Path, base: Path, tmp_path: Path, **overrides) -> TrainConfig:
    """A fast run: rank 4, batch 2, a handful of steps, files under tmp_path."""
    values = dict(
        data=data,
        base=str(base),
        name="testlora",
        trigger="stripy",
        rank=4,
        alpha=2,
        lr=1e-2,
        steps=4,
        batch_size=2,
        seed=3,
        device="cpu",
        output_dir=tmp_path / "run",
        lora_dir=tmp_path / "loras",
    )
    values.update(overrides)
    return TrainConfig(**values)
