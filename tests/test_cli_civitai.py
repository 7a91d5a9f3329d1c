"""`loradeck civitai …` against the fake Civitai server: search table, download, and the LoRA usable at once."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from loradeck.cli import app
from tests.civitai.fake_server import FakeCivitai
from tests.helpers.loras import write_demo_lora

runner = CliRunner()


def test_search_download_then_show_and_generate(home, tmp_path):
    content = write_demo_lora(tmp_path / "src.safetensors", seed=5).read_bytes()
    with FakeCivitai() as fake:
        entry = fake.add_model("Neon Glow", content, base_model="Other", trained_words=["neonglow", "bright"])
        fake.add_model("Other Style", content[:-8] + b"\0" * 8, trained_words=["x"])
        auth = ["--civitai-url", fake.base_url, "--token", fake.token]

        found = runner.invoke(app, ["civitai", "search", "Neon", "--json", *auth], catch_exceptions=False)
        rows = json.loads(found.stdout)
        assert [r["model"] for r in rows] == ["Neon Glow"]
        assert rows[0]["trigger_words"] == ["neonglow", "bright"]

        got = runner.invoke(app, ["civitai", "download", str(entry.model["id"]), *auth], catch_exceptions=False)
        assert got.exit_code == 0, got.output
        path = home / "models" / "Lora" / "neon_glow.safetensors"
        assert got.stdout.strip().splitlines()[-1] == str(path) and path.read_bytes() == content
        assert fake.token not in got.output

    shown = json.loads(runner.invoke(app, ["lora", "show", "neon_glow"], catch_exceptions=False).stdout)
    assert shown["trigger_words"] == ["neonglow", "bright"] and shown["trigger_source"]
    made = runner.invoke(app, ["generate", "a neonglow red circle <lora:neon_glow:0.7>", "--steps", "3"])
    assert made.exit_code == 0 and "trigger words" not in made.output and made.stdout.strip().endswith(".png")
