"""`loradeck generate --init-image … --mask …`: inpainting from the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from loradeck.cli import app

runner = CliRunner()


def test_generate_with_a_mask_redraws_only_the_masked_part(home, tmp_path):
    init = Image.new("RGB", (32, 32), (200, 40, 40))
    ImageDraw.Draw(init).ellipse((8, 8, 24, 24), fill=(30, 60, 220))
    mask = Image.new("L", (32, 32), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 15, 31), fill=255)  # the left half
    init.save(tmp_path / "init.png")
    mask.save(tmp_path / "mask.png")
    args = ["generate", "a green square", "--seed", "2", "--steps", "4", "--denoise", "0.9"]
    args += ["--init-image", str(tmp_path / "init.png"), "--mask", str(tmp_path / "mask.png"), "--mask-blur", "2"]
    args += ["--inpaint-fill", "latent nothing"]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (path,) = [Path(line) for line in result.stdout.splitlines() if line.endswith(".png")]
    out, src = np.asarray(Image.open(path).convert("RGB")).astype(int), np.asarray(init).astype(int)
    assert np.array_equal(out[:, 24:], src[:, 24:])  # right of the mask and its blur band: the init picture
    assert np.abs(out[:, :12] - src[:, :12]).mean() > 10
    text = Image.open(path).text["parameters"]
    assert "Mask blur: 2" in text and "Masked content: latent nothing" in text


def test_a_mask_without_an_init_image_is_refused(home, tmp_path):
    Image.new("L", (32, 32), 255).save(tmp_path / "mask.png")
    result = runner.invoke(app, ["generate", "x", "--mask", str(tmp_path / "mask.png"), "--steps", "1"])
    assert result.exit_code != 0 and "--init-image" in result.output
