"""Loud coverage: every result lists, per LoRA, modules matched/targeted and keys left unmatched; a LoRA that
matched nothing or is for another base model is an error line in the CLI, an API warning and a UI error box."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from fastapi.testclient import TestClient
from safetensors.torch import save_file
from typer.testing import CliRunner

from loradeck.cli import app
from loradeck.families import Family
from loradeck.lora.coverage import LoraCoverage, coverage_of
from loradeck.lora.report import FileReport, StackReport
from loradeck.ui.status import generation
from tests.helpers.loras import write_demo_lora

PROMPT = "a red circle on a blue background, stripy"
TAGS = " <lora:stripy:1> <lora:nothing:1> <lora:xl:1> <lora:half:1>"


def _pair(name: str, rows: int, cols: int) -> dict[str, torch.Tensor]:
    return {f"{name}.lora_down.weight": torch.randn(4, cols), f"{name}.lora_up.weight": torch.randn(rows, 4)}


def write_bad_loras(lora_dir: Path) -> None:
    """``nothing``: module names no model has; ``xl``: an SDXL LoRA (lora_te2_ keys); ``half``: the demo LoRA plus
    two modules the demo model does not have and one key that is no module at all."""
    lora_dir.mkdir(parents=True, exist_ok=True)
    save_file(
        _pair("lora_unet_no_such_block_proj", 8, 8) | _pair("lora_unet_nor_this_one", 8, 8),
        str(lora_dir / "nothing.safetensors"),
    )
    save_file(_pair("lora_te2_text_model_encoder_layers_0_mlp_fc1", 5120, 1280), str(lora_dir / "xl.safetensors"))
    write_demo_lora(lora_dir / "half.safetensors", seed=3)
    from safetensors.torch import load_file

    tensors = load_file(str(lora_dir / "half.safetensors"))
    tensors |= _pair("lora_unet_no_such_block_proj", 8, 8) | _pair("lora_unet_nor_this_one", 8, 8)
    tensors["some_stray_key"] = torch.zeros(3)
    save_file(tensors, str(lora_dir / "half.safetensors"))


def test_coverage_lines():
    ok = FileReport(
        "a",
        "a.safetensors",
        Family.SD1,
        "lora",
        "kohya",
        modules_total=4,
        modules_matched=3,
        unmatched_keys=["x.lora_up.weight", "x.lora_down.weight"],
    )
    skipped = FileReport(
        "b",
        "b.safetensors",
        Family.SDXL,
        "lora",
        "kohya",
        modules_total=2,
        skipped=True,
        warning="LoRA b is for SDXL but the loaded model is SD 1.x; it was skipped",
    )
    cov = coverage_of(StackReport(Family.SD1, [ok, skipped]), {"c": "LoRA not found: c."})
    assert [c.line() for c in cov] == [
        "LoRA a: 3/4 modules matched (75 %), 2 keys left unmatched.",
        "LoRA b is for SDXL but the loaded model is SD 1.x; it was skipped.",
        "LoRA not found: c.",
    ]
    assert [c.error is not None for c in cov] == [False, True, True]
    assert cov[0].to_dict()["percent"] == 75.0


def _check_lines(lines: list[str]) -> None:
    text = " ".join(" ".join(line.split()) for line in lines)
    assert re.search(r"LoRA stripy: (\d+)/\1 modules matched \(100 %\), 0 keys left unmatched", text)
    assert re.search(r"LoRA half: (\d+)/(\d+) modules matched \(\d+ %\), 5 keys left unmatched", text)
    assert "LoRA nothing matches no module of the loaded" in text
    assert "LoRA xl is for SDXL" in text


def test_cli_prints_coverage_and_errors(home):
    write_bad_loras(home / "models" / "Lora")
    result = CliRunner().invoke(app, ["generate", PROMPT + TAGS, "--seed", "1", "--steps", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    _check_lines(lines)
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 2 and any("nothing" in e for e in errors) and any("xl" in e for e in errors)
    assert result.stdout.strip().endswith(".png")  # the picture is drawn with the rest


def test_api_info_and_warnings(tmp_path):
    from loradeck.server import create_app
    from loradeck.services.studio import Studio

    home = tmp_path / "home"
    write_bad_loras(home / "models" / "Lora")
    with TestClient(create_app(Studio(home=home))) as client:
        ones = ",".join(["1"] * 26)  # block weights come in through the prompt tag, as with the extension
        prompt = PROMPT + TAGS.replace("<lora:stripy:1>", f"<lora:stripy:1:lbw={ones}>")
        body = {"prompt": prompt, "steps": 2, "width": 32, "height": 32, "seed": 1}
        response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200
    info = json.loads(response.json()["info"])
    assert f"<lora:stripy:1:lbw={ones}>" in info["prompt"] and f"lbw={ones}>" in info["infotexts"][0]
    cov = {c["name"]: c for c in info["lora_coverage"]}
    assert cov.keys() == {"stripy", "nothing", "xl", "half"}
    assert cov["stripy"]["matched"] == cov["stripy"]["targeted"] > 0 and cov["stripy"]["error"] is None
    assert cov["half"]["targeted"] == cov["half"]["matched"] + 2 and cov["half"]["unmatched_keys"] == 5
    assert cov["nothing"]["matched"] == 0 and cov["nothing"]["error"]
    assert cov["xl"]["error"]
    _check_lines([c["line"] for c in info["lora_coverage"]])
    warnings = " ".join(info["warnings"])
    assert "LoRA nothing matches no module" in warnings and "LoRA xl is for SDXL" in warnings


def test_ui_status_has_an_error_box():
    cov = [
        LoraCoverage("good", 10, 10, 0),
        LoraCoverage("bad", 0, 2, 4, "LoRA bad matches no module of the loaded SD 1.x model; it was skipped."),
    ]
    html = generation(["LoRA bad matches no module of the loaded SD 1.x model; it was skipped", "other note"], cov)
    error_box, rest = html.split("</div>", 1)
    assert "ld-status-error" in error_box and "LoRA bad matches no module" in error_box
    assert "LoRA bad" not in rest  # said once, as an error
    assert "ld-status-warning" in rest and "other note" in rest
    assert "LoRA good: 10/10 modules matched (100 %), 0 keys left unmatched." in rest


def test_lora_inspect_prints_coverage_as_a_percentage(home, tmp_path):
    path = write_demo_lora(tmp_path / "x.safetensors", rank=4, alpha=2.0)
    tensors = __import__("safetensors.torch", fromlist=["load_file"]).load_file(str(path))
    tensors |= _pair("lora_unet_no_such_block_proj", 8, 8)
    save_file(tensors, str(path))
    out = " ".join(CliRunner().invoke(app, ["lora", "inspect", str(path)]).output.split())
    m = re.search(
        r"coverage_percent: ([\d.]+) % \((\d+) of (\d+) modules of the model\); ([\d.]+) % of the file's "
        r"(\d+) modules matched",
        out,
    )
    assert m, out
    matched, total, in_file = int(m[2]), int(m[3]), int(m[5])
    assert float(m[1]) == round(100 * matched / total, 1) and in_file == matched + 1
    assert float(m[4]) == round(100 * matched / in_file, 1)
