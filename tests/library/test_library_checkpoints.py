"""Checkpoints: files and diffusers folders, A1111 titles, lazy sha256 kept in the index, resolution."""

from __future__ import annotations

import hashlib

import pytest
from library_helpers import write_checkpoint, write_diffusers_dir, write_lora

from loradeck.errors import ModelLoadError
from loradeck.families import Family
from loradeck.formats.hashes import autov1_file


def test_checkpoint_entries(dirs, make_library):
    _, ckpt, _ = dirs
    write_checkpoint(ckpt / "sub" / "v1.safetensors")
    write_checkpoint(ckpt / "v2.safetensors", prefix="cond_stage_model.model.")
    write_checkpoint(ckpt / "xl.safetensors", prefix="conditioner.embedders.1.model.")
    write_diffusers_dir(ckpt / "diffusers-sdxl", "sdxl")
    write_diffusers_dir(ckpt / "folder" / "sd15", "sd15")
    lib = make_library()
    by_name = {c.name: c for c in lib.checkpoints()}
    # diffusers folders are one model each; their unet/ etc. are not searched
    assert list(by_name) == ["diffusers-sdxl", "v2.safetensors", "xl.safetensors", "folder/sd15", "sub/v1.safetensors"]
    assert by_name["sub/v1.safetensors"].family is Family.SD1
    assert by_name["v2.safetensors"].family is Family.SD2
    assert by_name["xl.safetensors"].family is Family.SDXL
    assert by_name["diffusers-sdxl"].family is Family.SDXL
    assert by_name["folder/sd15"].family is Family.SD1
    v1 = by_name["sub/v1.safetensors"]
    assert (v1.model_name, v1.stem, v1.subfolder) == ("sub_v1", "v1", "sub")
    assert v1.hashes.autov1 == autov1_file(v1.path)
    assert v1.sha256 is None and v1.title == "sub/v1.safetensors"  # not hashed during the scan


def test_lazy_sha256_is_computed_once_and_kept(dirs, make_library):
    _, ckpt, _ = dirs
    path = write_checkpoint(ckpt / "sub" / "v1.safetensors")
    lib = make_library()
    entry = lib.resolve_checkpoint("v1")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert lib.checkpoint_sha256(entry) == sha
    assert entry.title == f"sub/v1.safetensors [{sha[:10]}]"
    d = entry.to_dict()
    assert (d["title"], d["hash"], d["sha256"], d["model_name"]) == (entry.title, sha[:10], sha, "sub_v1")

    again = make_library()  # a new process: the hash comes back from the index
    e2 = again.resolve_checkpoint("sub/v1.safetensors")
    assert e2.sha256 == sha and e2.title == entry.title
    assert again.resolve_checkpoint(entry.title) is e2
    assert again.resolve_checkpoint(sha[:10]) is e2
    assert again.resolve_checkpoint(str(path)) is e2
    assert again.by_hash(sha[:10]) is e2


def test_hash_checkpoints_fills_missing(dirs, make_library):
    _, ckpt, _ = dirs
    write_checkpoint(ckpt / "a.safetensors", seed=1)
    write_checkpoint(ckpt / "b.safetensors", seed=2)
    write_diffusers_dir(ckpt / "d", "sd15")
    lib = make_library()
    assert lib.hash_checkpoints() == 2
    assert all(c.sha256 for c in lib.checkpoints() if c.format != "diffusers")
    assert make_library().hash_checkpoints() == 0


def test_checkpoint_outside_the_folder_and_not_found(dirs, make_library, tmp_path):
    _, ckpt, _ = dirs
    write_checkpoint(ckpt / "realistic.safetensors")
    outside = write_checkpoint(tmp_path / "other" / "mine.safetensors", prefix="conditioner.embedders.1.x.")
    lib = make_library()
    e = lib.resolve_checkpoint(outside)
    assert e.path == outside and e.family is Family.SDXL
    with pytest.raises(ModelLoadError, match=r"Checkpoint not found: realistik.*did you mean realistic"):
        lib.resolve_checkpoint("realistik")


def test_broken_checkpoint_is_an_error_entry(dirs, make_library):
    lora, ckpt, _ = dirs
    (ckpt / "bad.safetensors").write_bytes(b"\x00" * 4)
    write_lora(lora / "a.safetensors")
    lib = make_library()
    assert lib.checkpoints() == []
    assert [(e.kind, e.path.name) for e in lib.errors()] == [("checkpoint", "bad.safetensors")]


def test_from_settings(tmp_path):
    from loradeck.library import Library
    from loradeck.settings import Settings

    settings = Settings(home=tmp_path)
    write_lora(settings.lora_path / "a.safetensors")
    lib = Library.from_settings(settings)
    assert [e.name for e in lib.loras()] == ["a"]
    assert (tmp_path / "cache" / "library.sqlite").is_file()
