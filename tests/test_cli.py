"""The `loradeck` command on the demo model: files, infotext, seeds, png-info round trip, LoRA tags and tools."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from loradeck.cli import app
from tests.helpers.loras import write_demo_lora

runner = CliRunner()
PROMPT = "a red circle on a blue background"


def run(*args: str) -> list[Path]:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return [Path(line) for line in result.stdout.splitlines() if line.endswith(".png")]


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_generate_writes_a1111_layout_with_infotext_and_is_reproducible(home):
    (first,) = run("generate", PROMPT, "--seed", "1", "--steps", "8")
    (second,) = run("generate", PROMPT, "--seed", "1", "--steps", "8")
    folder = home / "outputs" / "txt2img-images" / dt.date.today().isoformat()
    assert first == folder / "00000-1.png" and second == folder / "00001-1.png"
    assert (pixels(first) == pixels(second)).all()
    text = Image.open(first).text["parameters"]
    assert text.startswith(PROMPT + "\n")
    assert "Steps: 8, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7.0, Seed: 1, Size: 32x32" in text
    assert "Model: demo" in text and "Version: loradeck" in text


def test_image_two_of_a_batch_equals_a_single_run(home):
    batch = run("generate", PROMPT, "--seed", "5", "--batch-size", "3", "--steps", "6")
    (single,) = run("generate", PROMPT, "--seed", "6", "--steps", "6")
    assert [p.name.split("-", 1)[1] for p in batch] == ["5.png", "6.png", "7.png"]
    diff = np.abs(pixels(batch[1]) - pixels(single))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.02  # float batching may round one value differently


def test_png_info_and_from_png_round_trip(home):
    (path,) = run("generate", PROMPT, "--seed", "3", "--steps", "6", "--sampler", "DPM++ 2M Karras", "--cfg", "5")
    parsed = json.loads(runner.invoke(app, ["png-info", str(path), "--json"]).stdout)
    assert parsed["Prompt"] == PROMPT and parsed["Seed"] == "3" and parsed["Steps"] == "6"
    assert parsed["Sampler"] == "DPM++ 2M" and parsed["Schedule type"] == "Karras" and parsed["CFG scale"] == "5.0"
    assert (parsed["Size-1"], parsed["Size-2"]) == ("32", "32")
    (again,) = run("generate", "--from-png", str(path))
    assert (pixels(path) == pixels(again)).all()


def test_lora_tag_changes_the_picture_and_is_recorded(home):
    lora_dir = home / "models" / "Lora"
    write_demo_lora(lora_dir / "styles" / "wobble.safetensors", seed=1, scale=0.3)
    (plain,) = run("generate", PROMPT, "--seed", "2", "--steps", "6")
    (with_lora,) = run("generate", PROMPT + " <lora:wobble:0.8>", "--seed", "2", "--steps", "6")
    (zero,) = run("generate", PROMPT + " <lora:wobble:0>", "--seed", "2", "--steps", "6")
    assert not (pixels(plain) == pixels(with_lora)).all()
    assert (pixels(plain) == pixels(zero)).all()  # weight 0 = no LoRA, and the model was restored exactly
    text = Image.open(with_lora).text["parameters"]
    assert "<lora:wobble:0.8>" in text and 'Lora hashes: "wobble: ' in text
    listing = json.loads(runner.invoke(app, ["lora", "list", "--json"]).stdout)
    entry = next(e for e in listing if e["name"] == "wobble")
    assert entry["family"] == "demo" and entry["hashes"]["autov3"] in text


def test_unknown_lora_warns_and_generates_with_the_rest(home):
    result = runner.invoke(app, ["generate", PROMPT + " <lora:nosuch:1>", "--seed", "1", "--steps", "4"])
    assert result.exit_code == 0
    assert "LoRA not found: nosuch" in result.output
    assert result.stdout.strip().endswith(".png")


def test_bad_size_is_one_clear_sentence(home):
    from loradeck.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="multiple of 8"):
        runner.invoke(app, ["generate", PROMPT, "--width", "30"], catch_exceptions=False)


def test_lora_inspect_json(home, tmp_path):
    path = write_demo_lora(tmp_path / "x.safetensors", rank=4, alpha=2.0)
    info = json.loads(runner.invoke(app, ["lora", "inspect", str(path), "--json"]).stdout)
    assert info["family"] == "demo" and info["rank"] == 4 and info["alpha"] == 2.0
    assert info["modules_matched"] == info["modules_in_file"] > 0 and info["unmatched_keys"] == []


def test_missing_trigger_word_warns_and_add_trigger_words_appends_it(home):
    warned = runner.invoke(app, ["generate", PROMPT + " <lora:stripy:1>", "--steps", "3"])
    assert "none of its trigger words is in the prompt: stripy" in " ".join(warned.output.split())
    added = runner.invoke(app, ["generate", PROMPT + " <lora:stripy:1>", "--steps", "3", "--add-trigger-words"])
    assert "trigger words" not in added.output
    text = Image.open(added.stdout.strip().splitlines()[-1]).text["parameters"]
    assert text.splitlines()[0].endswith("stripy")
