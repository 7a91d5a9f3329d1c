"""The real `loradeck` process on bad input: exactly one line on stderr, a non-zero exit, no traceback, no rich
markup interpretation of file text; ``--debug`` shows the traceback (issue 18)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.helpers.fuzz_cases import seed_files

SRC = Path(__file__).resolve().parents[1] / "src"


def loradeck(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC), "LORADECK_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "loradeck", *args], capture_output=True, text=True, env=env, timeout=120
    )


def _one_error_line(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and lines[0].startswith("error: ")
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def files(tmp_path):
    sd = seed_files()["lora"]
    flat = dict(sd, **{"lora_unet_lin.lora_down.weight": torch.randn(12)})
    save_file({k: v.clone() for k, v in flat.items()}, str(tmp_path / "flat [bold]x.safetensors"))
    (tmp_path / "text.safetensors").write_text("not a model\nsecond line\n")
    meta = {"ss_output_name": "[/foo] [bold red]x", "modelspec.title": "line1\nline2 \x1b[31m"}
    save_file({k: v.clone() for k, v in sd.items()}, str(tmp_path / "ok.safetensors"), metadata=meta)
    return tmp_path


def test_bad_files_give_one_line_naming_the_file(files, home):
    _one_error_line(loradeck("lora", "inspect", str(files / "flat [bold]x.safetensors"), home=home), "flat [bold]x")
    _one_error_line(loradeck("lora", "inspect", str(files / "text.safetensors"), home=home), "text.safetensors")
    _one_error_line(loradeck("lora", "inspect", str(files / "missing.safetensors"), home=home), "does not exist")
    _one_error_line(loradeck("png-info", str(files / "text.safetensors"), home=home), "text.safetensors")


def test_usage_errors_are_one_line_too(home):
    _one_error_line(loradeck("lora", "inspect", home=home), "Missing argument")
    _one_error_line(loradeck("generate", "x", "--steps", "many", home=home), "--steps")


def test_metadata_markup_is_printed_as_plain_text(files, home):
    result = loradeck("lora", "inspect", str(files / "ok.safetensors"), home=home)
    assert result.returncode == 0, result.stderr
    assert "[/foo] [bold red]x" in result.stderr  # shown as written, not interpreted (was a MarkupError)
    assert "\x1b[31m" not in result.stderr and "\\x1b[31m" in result.stderr  # escaped, not sent to the terminal


def test_debug_shows_the_traceback(files, home):
    result = loradeck("--debug", "lora", "inspect", str(files / "text.safetensors"), home=home)
    assert result.returncode != 0 and "Traceback" in result.stderr and "FormatError" in result.stderr
