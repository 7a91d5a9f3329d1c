"""Civitai base-model labels (Pony, Illustrious, NoobAI, Flux.1 D, …) from ``.civitai.info`` sidecars: shown by the
library and ``lora list --json`` (``base_model``), and the compatibility check by architecture: a Pony LoRA on an
Illustrious model is applied with a note, an SD1 LoRA on a Flux model is skipped with one warning."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from loradeck.families import Family
from loradeck.library import Library
from loradeck.services.plan import Checkpoint, plan_generation
from loradeck.settings import Settings
from loradeck.vocab import GenerationRequest


def _lora(path, module: str, down: tuple[int, int], up_rows: int, base: str | None):
    g = torch.Generator().manual_seed(0)
    save_file(
        {
            f"{module}.lora_down.weight": torch.randn(*down, generator=g),
            f"{module}.lora_up.weight": torch.randn(up_rows, down[0], generator=g),
            f"{module}.alpha": torch.tensor(4.0),
        },
        str(path),
    )
    if base is not None:
        path.with_suffix(".civitai.info").write_text(json.dumps({"baseModel": base, "model": {"name": path.stem}}))


@pytest.fixture
def library(tmp_path):
    lora_dir, ckpt_dir = tmp_path / "models" / "Lora", tmp_path / "models" / "Stable-diffusion"
    lora_dir.mkdir(parents=True)
    ckpt_dir.mkdir(parents=True)
    te1 = "lora_te1_text_model_encoder_layers_0_self_attn_q_proj"  # SDXL's CLIP-L: the SDXL architecture
    _lora(lora_dir / "pony_style.safetensors", te1, (4, 768), 768, "Pony")
    _lora(lora_dir / "xl_plain.safetensors", te1, (4, 768), 768, None)
    _lora(
        lora_dir / "sd1_style.safetensors",
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj",
        (4, 768),
        768,
        "SD 1.5",
    )
    _lora(lora_dir / "flux_style.safetensors", "lora_unet_double_blocks_0_img_attn_qkv", (4, 32), 96, "Flux.1 D")
    save_file({"double_blocks.0.img_attn.qkv.weight": torch.zeros(96, 32)}, str(ckpt_dir / "flux1-dev.safetensors"))
    (ckpt_dir / "flux1-dev.civitai.info").write_text(json.dumps({"baseModel": "Flux.1 D"}))
    return Library(lora_dir, ckpt_dir, tmp_path / "cache")


def test_labels_name_their_architecture():
    for label in ("Pony", "Illustrious", "NoobAI", "SDXL 1.0", "SDXL Lightning"):
        assert Family.from_label(label) is Family.SDXL, label
    assert Family.from_label("SD 1.5") is Family.SD1
    for label in ("Flux.1 D", "Flux.1 S", "Flux.1 Kontext", "Flux.1 Krea"):
        assert Family.from_label(label) is Family.FLUX, label
    for label in ("Flux.2 D", "Pony V7", "SD 3.5", ""):
        assert Family.from_label(label) is Family.UNKNOWN, label


def test_library_shows_the_labels(library):
    library.scan()
    loras = {e.name: e for e in library.loras()}
    assert {n: (e.family, e.base_model) for n, e in loras.items()} == {
        "pony_style": (Family.SDXL, "Pony"),
        "xl_plain": (Family.SDXL, "SDXL"),  # no sidecar: the family's label
        "sd1_style": (Family.SD1, "SD 1.5"),
        "flux_style": (Family.FLUX, "Flux.1 D"),
    }
    assert loras["pony_style"].to_dict()["base_model"] == "Pony"
    (ckpt,) = library.checkpoints()
    assert (ckpt.family, ckpt.base_model, ckpt.to_dict()["base_model"]) == (Family.FLUX, "Flux.1 D", "Flux.1 D")


def test_lora_list_json_has_base_model(library, tmp_path, monkeypatch):
    from loradeck.cli import app

    monkeypatch.setenv("LORADECK_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["lora", "list", "--json"], catch_exceptions=False)
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["pony_style"]["base_model"] == "Pony" and rows["flux_style"]["base_model"] == "Flux.1 D"


def _plan(library, tmp_path, prompt: str, checkpoint: Checkpoint):
    request = GenerationRequest(prompt, seed=1, steps=2, width=64, height=64)
    return plan_generation(request, checkpoint=checkpoint, library=library, settings=Settings(home=tmp_path))


def test_pony_lora_on_illustrious_is_applied_with_a_note(library, tmp_path):
    plan = _plan(library, tmp_path, "a cat <lora:pony_style:0.8>", Checkpoint("illu", Family.SDXL, 1024, "Illustrious"))
    assert [c.entry.name for c in plan.loras] == ["pony_style"]
    notes = [w for w in plan.warnings if "pony_style" in w]
    assert len(notes) == 1 and "Pony" in notes[0] and "Illustrious" in notes[0] and "applied" in notes[0]
    same = _plan(library, tmp_path, "a cat <lora:pony_style:0.8>", Checkpoint("pony", Family.SDXL, 1024, "Pony"))
    assert not same.warnings


def test_sd1_lora_on_flux_is_skipped_with_one_warning(library, tmp_path):
    flux = Checkpoint("flux1-dev", Family.FLUX, 1024, "Flux.1 D")
    plan = _plan(library, tmp_path, "a cat <lora:sd1_style:1> <lora:flux_style:1> <lora:sd1_style:0.5>", flux)
    assert [c.entry.name for c in plan.loras] == ["flux_style"]
    skipped = [w for w in plan.warnings if "sd1_style" in w and "more than once" not in w]
    assert len(skipped) == 1 and "SD1" in skipped[0] and "Flux" in skipped[0] and "skipped" in skipped[0]


def test_flux_diffusers_folder_is_flux(tmp_path):
    from loradeck.library.detect import summarize_diffusers_dir

    (tmp_path / "text_encoder").mkdir()
    (tmp_path / "text_encoder" / "config.json").write_text(json.dumps({"hidden_size": 768}))  # CLIP-L, as SD1's
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    assert summarize_diffusers_dir(tmp_path).family is Family.FLUX
