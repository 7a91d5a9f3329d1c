"""`loradeck lora merge|resize|convert` from the command line: library names in, file in the LoRA folder, report out."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from loradeck.cli import app
from loradeck.lora.formats import load_lora

runner = CliRunner()


def test_merge_then_resize_into_the_lora_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("LORADECK_HOME", str(tmp_path / "home"))
    lora_dir = tmp_path / "loras"
    lora_dir.mkdir()
    merged = runner.invoke(app, ["lora", "merge", "stripy:0.6", "inky:0.4", "--rank", "4", "--lora-dir",
                                 str(lora_dir), "--name", "stripink"])  # fmt: skip
    assert merged.exit_code == 0, merged.output
    path = Path(merged.stdout.strip().splitlines()[-1])
    assert path == lora_dir / "stripink.safetensors" and path.is_file()
    assert (lora_dir / "stripink.json").is_file()  # the sidecar the library reads
    assert "retained Frobenius share overall" in merged.stderr
    assert load_lora(path).rank == 4

    resized = runner.invoke(app, ["lora", "resize", "stripink", "--rank", "2", "--lora-dir", str(lora_dir)])
    assert resized.exit_code == 0, resized.output
    assert "lora_unet_" in resized.stderr  # one line per module
    assert Path(resized.stdout.strip().splitlines()[-1]) == lora_dir / "stripink-r2.safetensors"

    again = runner.invoke(app, ["lora", "resize", "stripink", "--rank", "2", "--lora-dir", str(lora_dir)])
    assert again.exit_code != 0 and "already exists" in str(again.exception)
    forced = runner.invoke(app, ["lora", "resize", "stripink", "--rank", "1", "--name", "stripink-r2", "--overwrite",
                                 "--lora-dir", str(lora_dir)])  # fmt: skip
    assert forced.exit_code == 0, forced.output
    assert load_lora(lora_dir / "stripink-r2.safetensors").rank == 1
