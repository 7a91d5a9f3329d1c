"""The Tools tab's form logic: library names in, the file in the LoRA folder, errors as one sentence."""

from __future__ import annotations

from loradeck.lora.formats import load_lora
from loradeck.services.studio import Studio
from loradeck.ui.tools_tab import run_form


def test_tools_form_merges_into_the_library_and_reports_errors(tmp_path):
    studio = Studio(home=tmp_path / "home", lora_dir=tmp_path / "loras")
    (tmp_path / "loras").mkdir()
    html = run_form(studio, "merge", "stripy:0.5, dotty:0.5", 3, None, "fixed rank", 0.9, "demo", "", "kohya", "mix")
    assert "wrote mix.safetensors" in html and "Retained Frobenius share" in html
    assert load_lora(tmp_path / "loras" / "mix.safetensors").rank == 3
    assert any(e.name == "mix" for e in studio.library.loras())
    bad = run_form(studio, "resize", "nosuch", 2, None, "fixed rank", 0.9, "demo", "", "kohya", "")
    assert "ld-status-error" in bad and "nosuch" in bad
