"""Model upscalers through spandrel without torchvision: detection, safe loading, results equal spandrel's forward."""

from __future__ import annotations

import importlib.util
import pickle
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from loradeck.engine.upscalers import available, find_model_upscalers, import_spandrel, upscale
from loradeck.errors import InvalidRequest, ModelLoadError
from tests.helpers.upscalers import reference_upscale, write_upscaler


def picture(seed: int = 0, side: int = 16) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))


def test_spandrel_imports_without_torchvision():
    spandrel = import_spandrel()
    assert spandrel.__version__ == "0.4.2"
    assert "torchvision" not in sys.modules  # the stand-in was only there during the import
    assert importlib.util.find_spec("torchvision") is None


@pytest.mark.parametrize(
    ("kind", "folder", "name"),
    [
        ("esrgan", "ESRGAN", "4x-Random.pth"),
        ("compact", "RealESRGAN", "realesr-4x.safetensors"),
        ("swinir", "SwinIR", "x2-swin.pth"),
    ],
)
def test_model_upscale_equals_spandrel_forward(tmp_path, kind, folder, name):
    net = write_upscaler(tmp_path / folder / name, kind, seed=3)
    found = find_model_upscalers(tmp_path)
    stem = name.rsplit(".", 1)[0]
    assert found[stem].folder == folder and stem in available(tmp_path)
    source = picture(1)
    expected = reference_upscale(net, source)
    got = upscale(source, expected.width, expected.height, stem, tmp_path)
    assert got.size == expected.size and got.size[0] > source.size[0]
    assert np.array_equal(np.asarray(got), np.asarray(expected))
    assert np.asarray(got).std() > 5  # a real picture, not a flat one


def test_model_upscale_to_a_smaller_target_resizes_the_model_output(tmp_path):
    net = write_upscaler(tmp_path / "ESRGAN" / "4x.pth", "esrgan", seed=4)
    source = picture(2)
    expected = reference_upscale(net, source).resize((48, 40), Image.Resampling.LANCZOS)  # one pass, then Lanczos
    got = upscale(source, 48, 40, "4x", tmp_path)
    assert np.array_equal(np.asarray(got), np.asarray(expected))


def test_pixel_upscalers_are_pil():
    source = picture(5)
    got = upscale(source, 40, 24, "Lanczos", None)
    assert np.array_equal(np.asarray(got), np.asarray(source.resize((40, 24), Image.Resampling.LANCZOS)))


def test_unknown_upscaler_is_named(tmp_path):
    with pytest.raises(InvalidRequest, match="'4x-Missing'"):
        upscale(picture(), 64, 64, "4x-Missing", tmp_path)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_a_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "ESRGAN" / "evil.pth"
    path.parent.mkdir(parents=True)
    torch.save({"w": torch.zeros(1), "x": Evil()}, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(ModelLoadError, match="evil.pth"):
        upscale(picture(), 64, 64, "evil", tmp_path)


def test_a_file_spandrel_does_not_know_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "ESRGAN" / "junk.safetensors"
    path.parent.mkdir(parents=True)
    save_file({"foo": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ModelLoadError, match="junk.safetensors"):
        upscale(picture(), 64, 64, "junk", tmp_path)
