"""The embeddings folders: every layout A1111 reads, the family by vector width, hostile files as one sentence each
(a malicious pickle runs nothing), A1111's hash, two folders, rescans."""

from __future__ import annotations

import hashlib
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from loradeck.errors import FormatError
from loradeck.families import Family
from loradeck.formats.embeddings import read_embedding
from loradeck.library.embeddings import EmbeddingLibrary
from loradeck.settings import load_settings


def _t(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class _Payload:
    """Unpickling this would create a file: a safe loader must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return (Path.touch, (Path(self.marker),))


def test_every_layout_and_its_family(tmp_path):
    root = tmp_path / "embeddings"
    (root / "neg").mkdir(parents=True)
    save_file({"emb_params": _t(4, 768)}, str(root / "neg" / "easyneg.safetensors"))  # kohya SD1, in a subfolder
    a1111 = {"string_to_token": {"*": 265}, "string_to_param": {"*": _t(2, 1024).requires_grad_()}, "name": "x",
             "step": 3000, "sd_checkpoint": "e6e8e1fc", "sd_checkpoint_name": "v2-1_768"}  # fmt: skip
    torch.save(a1111, root / "sd2style.pt")
    save_file({"clip_l": _t(3, 768), "clip_g": _t(3, 1280)}, str(root / "xlneg.safetensors"))
    torch.save({"<cat-toy>": _t(768)}, root / "learned_embeds.bin")  # diffusers: one 1-D vector
    save_file({"emb_params": _t(2, 64)}, str(root / "demo_dots.safetensors"))
    save_file({"emb_params": _t(1, 100)}, str(root / "odd.safetensors"))
    entries = {e.name: e for e in EmbeddingLibrary([root]).scan()}
    assert {n: (e.family, e.vectors, e.shape) for n, e in entries.items()} == {
        "easyneg": (Family.SD1, 4, 768),
        "sd2style": (Family.SD2, 2, 1024),
        "xlneg": (Family.SDXL, 3, 2048),
        "learned_embeds": (Family.SD1, 1, 768),
        "demo_dots": (Family.DEMO, 2, 64),
        "odd": (Family.UNKNOWN, 1, 100),
    }
    sd2 = entries["sd2style"]
    assert sd2.embedding.a1111() == {
        "step": 3000, "sd_checkpoint": "e6e8e1fc", "sd_checkpoint_name": "v2-1_768", "shape": 1024, "vectors": 2,
    }  # fmt: skip
    assert sd2.sha256 == hashlib.sha256((root / "sd2style.pt").read_bytes()).hexdigest()
    assert sd2.short_hash == sd2.sha256[:12]  # A1111's TI hashes value
    assert entries["easyneg"].subfolder == "neg"
    parts = entries["xlneg"].embedding.parts  # one table per encoder, clip_l then clip_g, as stored
    assert torch.equal(parts[0], _t(3, 768)) and torch.equal(parts[1], _t(3, 1280))


def test_a_malicious_pickle_runs_nothing_and_the_scan_goes_on(tmp_path):
    root = tmp_path / "embeddings"
    root.mkdir()
    marker = tmp_path / "pwned"
    torch.save({"string_to_param": {"*": _Payload(str(marker))}}, root / "evil.pt")
    (root / "evil2.pt").write_bytes(pickle.dumps(os.system))  # a global: refused by weights_only, never called
    save_file({"emb_params": _t(1, 768)}, str(root / "good.safetensors"))
    library = EmbeddingLibrary([root])
    assert [e.name for e in library.scan()] == ["good"]
    errors = {e.path.name: e.message for e in library.errors()}
    assert not marker.exists()
    assert set(errors) == {"evil.pt", "evil2.pt"}
    for name, message in errors.items():
        assert message.startswith(f"{root / name}: is not a safely loadable PyTorch checkpoint") and "\n" not in message


@pytest.mark.parametrize(
    "name, content, why",
    [
        ("trunc.safetensors", "truncated", "ends past the end of the file"),
        ("nan.safetensors", {"emb_params": torch.full((1, 768), float("nan"))}, "contains NaN or infinite values"),
        ("many.safetensors", {"emb_params": _t(76, 768)}, "76 vectors, more than the 75 of a prompt chunk"),
        ("two.safetensors", {"a": _t(1, 768), "b": _t(1, 768)}, "has 2 tensors; an embedding has one"),
        ("ints.safetensors", {"emb_params": torch.zeros(1, 768, dtype=torch.int32)}, "must be floating point"),
        ("mixed.safetensors", {"clip_l": _t(2, 768), "clip_g": _t(3, 1280)}, "2 clip_l vectors but 3 clip_g"),
        ("terms.pt", {"string_to_param": {"*": _t(1, 768), "+": _t(1, 768)}}, "has 2 terms in string_to_param"),
        ("cube.safetensors", {"emb_params": _t(1, 2, 768)}, "has shape [1, 2, 768]; expected [vectors, width]"),
    ],
)
def test_bad_files_are_one_sentence_naming_the_file(tmp_path, name, content, why):
    path = tmp_path / name
    if content == "truncated":
        save_file({"emb_params": _t(2, 768)}, str(path))
        path.write_bytes(path.read_bytes()[:-100])
    elif name.endswith(".pt"):
        torch.save(content, path)
    else:
        save_file(content, str(path))
    with pytest.raises(FormatError) as err:
        read_embedding(path)
    assert str(path) in str(err.value) and why in str(err.value) and "\n" not in str(err.value)
    library = EmbeddingLibrary([tmp_path])
    assert library.scan() == [] and [e.path.name for e in library.errors()] == [name]


def test_size_cap_empty_files_two_folders_and_rescans(tmp_path):
    big = tmp_path / "big.safetensors"
    save_file({"emb_params": _t(2, 768)}, str(big))
    with pytest.raises(FormatError, match="too large to be a textual-inversion embedding"):
        read_embedding(big, max_bytes=1000)
    a1111, home = tmp_path / "a1111" / "embeddings", tmp_path / "home" / "models" / "embeddings"
    a1111.mkdir(parents=True)
    home.mkdir(parents=True)
    (home / "empty.pt").write_bytes(b"")  # A1111 skips empty files without a word
    save_file({"emb_params": _t(1, 768, seed=1)}, str(a1111 / "same.safetensors"))
    save_file({"emb_params": _t(1, 1024, seed=2)}, str(home / "same.safetensors"))
    settings = load_settings(home=tmp_path / "home", embeddings_dir=a1111)
    assert settings.embedding_roots == (a1111, home)
    library = EmbeddingLibrary(settings.embedding_roots)
    (entry,) = library.scan()
    assert entry.path == a1111 / "same.safetensors" and entry.family is Family.SD1  # the --embeddings-dir one
    assert entry.notes == [f"{home / 'same.safetensors'} has the same name and is not used."]
    assert library.errors() == []
    save_file({"emb_params": _t(3, 768)}, str(home / "new.safetensors"))
    (a1111 / "same.safetensors").unlink()
    assert {e.name: e.family for e in library.scan()} == {"new": Family.SD1, "same": Family.SD2}
    os.environ["LORADECK_EMBEDDINGS_DIR"] = str(a1111)
    try:
        assert load_settings(home=tmp_path / "home").embeddings_dir == a1111
    finally:
        del os.environ["LORADECK_EMBEDDINGS_DIR"]
