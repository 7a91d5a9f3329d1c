"""`loradeck generate` with embeddings: ``--embeddings-dir`` (an A1111 folder), ``TI hashes`` in the PNG, and
``--from-png`` reading them back (same picture; a changed or missing embedding is a warning line)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from loradeck.cli import app

runner = CliRunner()


def _png(result) -> Path:
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.stdout.splitlines() if line.endswith(".png")]
    return Path(line)


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_embeddings_dir_ti_hashes_and_from_png(home, tmp_path):
    folder = tmp_path / "a1111" / "embeddings"
    folder.mkdir(parents=True)
    path = folder / "blotq.safetensors"
    save_file({"emb_params": torch.randn(1, 64, generator=torch.Generator().manual_seed(1)) * 0.5}, str(path))
    args = ["generate", "a red circle", "-n", "blotq", "--seed", "2", "--steps", "3", "--embeddings-dir", str(folder)]
    first = _png(runner.invoke(app, args))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert f'TI hashes: "blotq: {sha}"' in Image.open(first).text["parameters"]

    again = runner.invoke(app, ["generate", "--from-png", str(first), "--embeddings-dir", str(folder)])
    assert (_pixels(_png(again)) == _pixels(first)).all() and "warning" not in again.output

    missing = runner.invoke(app, ["generate", "--from-png", str(first)])  # no --embeddings-dir: not there
    _png(missing)
    assert f"The picture's embedding blotq ({sha}) is not in the embeddings folder." in missing.output


def test_hash_notes_name_a_changed_or_missing_embedding(tmp_path):
    from loradeck.library.embeddings import EmbeddingLibrary
    from loradeck.services.embeddings import hash_notes

    save_file({"emb_params": torch.ones(1, 64)}, str(tmp_path / "blotq.safetensors"))
    save_file({"emb_params": torch.zeros(1, 64)}, str(tmp_path / "renamed.safetensors"))
    entries = EmbeddingLibrary([tmp_path]).scan()
    sha = {e.name: e.short_hash for e in entries}
    assert hash_notes(entries, {"blotq": sha["blotq"]}) == []
    assert hash_notes(entries, {"blotq": "0123456789ab", "gone": sha["renamed"]}) == [
        f"The embedding blotq here ({sha['blotq']}) is not the picture's (0123456789ab): the re-render may differ.",
        f"The picture's embedding gone ({sha['renamed']}) is not in the embeddings folder; renamed.safetensors has "
        "its hash.",
    ]


def test_embeddings_list(home, tmp_path):
    import json

    folder = home / "models" / "embeddings"
    folder.mkdir(parents=True)
    save_file({"clip_l": torch.zeros(2, 768), "clip_g": torch.zeros(2, 1280)}, str(folder / "xl.safetensors"))
    (folder / "bad.pt").write_bytes(b"nonsense")
    rows = json.loads(runner.invoke(app, ["embeddings", "--json"]).stdout)
    assert [(r["name"], r.get("family"), r.get("vectors"), r.get("shape")) for r in rows[:1]] == [("xl", "sdxl", 2, 2048)]
    assert rows[1]["unreadable"] and rows[1]["error"].startswith(f"{folder / 'bad.pt'}: ")
    table = runner.invoke(app, ["embeddings"])
    assert table.exit_code == 0 and "xl" in table.output and "unreadable" in table.output
