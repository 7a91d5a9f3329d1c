"""`loradeck train`: flags over a train.toml, the file in the LoRA folder, errors as one sentence."""

from __future__ import annotations

import json

from safetensors import safe_open
from typer.testing import CliRunner

from loradeck.cli import app


def test_train_command_with_config_file_and_flags(shapes_data, demo_base, tmp_path):
    toml = tmp_path / "train.toml"
    toml.write_text(
        f'data = "{shapes_data}"\nbase = "{demo_base}"\nname = "fromtoml"\nnetwork_dim = 2\nsteps = 50\n'
        f'batch_size = 2\ndevice = "cpu"\noutput_dir = "{tmp_path / "run"}"\nlora_dir = "{tmp_path / "loras"}"\n'
    )
    result = CliRunner().invoke(
        app, ["train", "--config", str(toml), "--steps", "2", "--trigger", "dotty", "--unet-only"]
    )
    assert result.exit_code == 0, result.output
    path = tmp_path / "loras" / "fromtoml.safetensors"
    with safe_open(str(path), "pt") as f:
        meta, keys = f.metadata(), list(f.keys())
    assert meta["ss_steps"] == "2" and meta["ss_network_dim"] == "2"  # the flag beat the file, the file beat defaults
    assert keys and all(k.startswith("lora_unet_") for k in keys)  # --unet-only
    assert json.loads(path.with_suffix(".json").read_text())["activation text"] == "dotty"


def test_train_command_reports_bad_data(tmp_path):
    (tmp_path / "data" / "3_empty").mkdir(parents=True)
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "data"), "--lora-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "3_empty" in str(result.exception) or "3_empty" in result.output
