"""Scanning: order, hidden folders, symlinks, hashes, metadata, index reuse and per-file errors."""

from __future__ import annotations

import hashlib
import json
import os
import struct

import pytest
from library_helpers import CountingHasher, write_checkpoint, write_lora

from loradeck.families import Family


def _names(lib):
    return [e.qualified_name for e in lib.loras()]


def test_natural_order_subfolders_and_hidden_dirs(dirs, make_library):
    lora, _, _ = dirs
    for rel in ["b10.safetensors", "b2.safetensors", "A.safetensors", "sub/z.pt", "sub/a.ckpt", "Sub2/m.safetensors"]:
        write_lora(lora / rel)
    write_lora(lora / ".hidden" / "secret.safetensors")
    (lora / "notes.txt").write_text("not a model")
    # A1111 order: folders by natural path order, files naturally sorted inside each folder.
    assert _names(make_library()) == ["A", "b2", "b10", "sub/a", "sub/z", "Sub2/m"]


def test_symlinks_followed_without_loops(dirs, make_library, tmp_path):
    lora, _, _ = dirs
    write_lora(lora / "sub" / "inner.safetensors")
    outside = write_lora(tmp_path / "elsewhere" / "linked.safetensors", seed=3)
    os.symlink(lora, lora / "sub" / "loop")  # points back to the root
    os.symlink(outside.parent, lora / "ext")  # a linked folder outside the tree
    os.symlink(outside, lora / "file_link.safetensors")
    lib = make_library()
    assert _names(lib) == ["file_link", "ext/linked", "sub/inner"]
    assert lib.resolve_lora("ext/linked").hashes.sha256 == hashlib.sha256(outside.read_bytes()).hexdigest()


def test_entry_fields_hashes_and_metadata(dirs, make_library):
    lora, _, _ = dirs
    freq = {"10_ink": {"ink style": 12, "cat": 3}}
    path = write_lora(
        lora / "styles" / "ink.safetensors",
        {
            "ss_output_name": "ink_v2",
            "ss_base_model_version": "sdxl_base_v1-0",
            "ss_tag_frequency": freq,
            "ss_network_alpha": "4.0",
            "ss_network_dim": "4",
            "modelspec.title": "Ink",
        },
        te="lora_te1",
    )
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    e = make_library().resolve_lora("ink")
    assert (e.name, e.alias, e.subfolder, e.path, e.size) == ("ink", "ink_v2", "styles", path, len(data))
    assert e.family is Family.SDXL
    assert e.rank == 4 and e.alpha == 4.0
    assert e.hashes.sha256 == hashlib.sha256(data).hexdigest()
    assert e.hashes.autov2 == hashlib.sha256(data).hexdigest()[:10]
    assert e.hashes.autov3 == hashlib.sha256(data[8 + n :]).hexdigest()[:12]
    assert e.lora_hash == e.hashes.autov3
    assert e.metadata["ss_tag_frequency"] == freq  # JSON-decoded because it starts with "{"
    assert e.metadata["ss_network_dim"] == "4"  # other values stay strings
    d = e.to_dict()
    json.dumps(d)  # JSON-ready
    for key in ("name", "alias", "path", "family", "format", "trigger_words", "preferred_weight", "hashes", "preview"):
        assert key in d
    assert d["hashes"]["autov3"] == e.hashes.autov3 and d["family"] == "sdxl"


@pytest.mark.parametrize(
    "metadata, expected",
    [
        ({"ss_base_model_version": "sdxl_base_v1-0"}, Family.SDXL),
        ({"ss_v2": "True", "ss_base_model_version": "sd_v2"}, Family.SD2),
        ({"modelspec.architecture": "stable-diffusion-v1/lora"}, Family.SD1),
        ({"ss_v2": "False", "ss_network_module": "networks.lora"}, Family.SD1),
    ],
)
def test_family_from_metadata(dirs, make_library, metadata, expected):
    write_lora(dirs[0] / "x.safetensors", metadata)
    assert make_library().resolve_lora("x").family is expected


def test_sidecar_sd_version_overrides_metadata(dirs, make_library):
    lora, _, _ = dirs
    write_lora(lora / "x.safetensors", {"ss_base_model_version": "sd_v1"})
    (lora / "x.json").write_text(json.dumps({"sd version": "SDXL", "preferred weight": 0.6}))
    (lora / "x.preview.png").write_bytes(b"png")
    e = make_library().resolve_lora("x")
    assert e.family is Family.SDXL
    assert e.preferred_weight == 0.6
    assert e.preview == lora / "x.preview.png"


def test_rescan_reuses_the_index(dirs, make_library):
    lora, _, _ = dirs
    for i in range(5):
        write_lora(lora / f"l{i}.safetensors", seed=i)
    first = CountingHasher()
    report = make_library(first).scan()
    assert len(first.calls) == 5 and report.hashed == 5
    before = {e.name: e.hashes for e in make_library(CountingHasher()).loras()}

    again = CountingHasher()  # a new Library = a new process: only the sqlite index is shared
    lib = make_library(again)
    report = lib.scan()
    assert again.calls == [] and (report.hashed, report.reused) == (0, 5)
    assert {e.name: e.hashes for e in lib.loras()} == before

    changed = write_lora(lora / "l3.safetensors", seed=99)  # new content, new size/mtime
    os.utime(changed, ns=(1, 1))
    report = lib.refresh()
    assert again.calls == [changed] and report.hashed == 1
    assert lib.resolve_lora("l3").hashes.sha256 == hashlib.sha256(changed.read_bytes()).hexdigest()

    (lora / "l0.safetensors").unlink()
    lib.refresh()
    assert lib.index.get(str(lora / "l0.safetensors")) is None  # vanished files leave the index


def test_broken_files_get_an_error_entry_and_the_scan_goes_on(dirs, make_library):
    lora, _, _ = dirs
    good = write_lora(lora / "good.safetensors")
    data = write_lora(lora / "cut.safetensors").read_bytes()
    (lora / "cut.safetensors").write_bytes(data[: len(data) - 100])
    (lora / "hostile.safetensors").write_bytes(struct.pack("<Q", 10**12) + b"{}")
    (lora / "garbage.safetensors").write_bytes(struct.pack("<Q", 5) + b"nope!")
    (lora / "tiny.safetensors").write_bytes(b"abc")
    hasher = CountingHasher()
    lib = make_library(hasher)
    assert [e.name for e in lib.loras()] == ["good"]
    errors = {e.path.name: e.message for e in lib.errors()}
    assert set(errors) == {"cut.safetensors", "hostile.safetensors", "garbage.safetensors", "tiny.safetensors"}
    assert "truncated" in errors["cut.safetensors"]
    for name, message in errors.items():
        assert name in message  # one sentence naming the file
    assert hasher.calls == [good]
    lib.refresh()
    assert hasher.calls == [good] and len(lib.errors()) == 4  # errors are cached until the file changes


def test_progress_callback(dirs, make_library):
    lora, ckpt, _ = dirs
    for i in range(3):
        write_lora(lora / f"l{i}.safetensors", seed=i)

    write_checkpoint(ckpt / "base.safetensors")
    seen = []
    make_library().scan(on_progress=lambda done, total, path: seen.append((done, total, path.name)))
    assert [(d, t) for d, t, _ in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert seen[-1][2] == "base.safetensors"


def test_corrupt_index_is_rebuilt(dirs, make_library):
    lora, _, cache = dirs
    write_lora(lora / "a.safetensors")
    cache.mkdir()
    (cache / "library.sqlite").write_bytes(b"this is not a database" * 100)
    assert [e.name for e in make_library().loras()] == ["a"]


def test_unusable_cache_dir_falls_back_to_memory(dirs, tmp_path):
    from loradeck.library import Library

    lora, ckpt, _ = dirs
    write_lora(lora / "a.safetensors")
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the cache folder should be")
    lib = Library(lora, ckpt, blocker / "cache")
    assert [e.name for e in lib.loras()] == ["a"]
    assert "not_a_dir" in lib.index.warning


class _Payload:
    """Unpickling this would create a file: a safe loader must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return (Path.touch, (Path(self.marker),))


def test_pickle_loras_are_read_safely_for_their_family(dirs, make_library, tmp_path):
    import torch

    lora, _, _ = dirs
    state = {
        "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(4, 768),
        "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": torch.zeros(3072, 4),
        "lora_te1_text_model_encoder_layers_0_mlp_fc1.alpha": torch.tensor(2.0),
    }
    torch.save(state, lora / "xl_style.pt")
    marker = tmp_path / "pwned"
    torch.save({"x": _Payload(str(marker))}, lora / "evil.pt")
    lib = make_library()
    xl = lib.resolve_lora("xl_style")
    assert (xl.family, xl.format, xl.rank, xl.alpha) == (Family.SDXL, "lora", 4, 2.0)
    evil = lib.resolve_lora("evil")  # still listed, as A1111 lists it; nothing was executed
    assert evil.family is Family.UNKNOWN and not marker.exists()
