"""Hashes against hashlib/zlib computed independently on files the test writes."""

from __future__ import annotations

import hashlib
import os
import random
import struct
import tracemalloc
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from loradeck.formats.hashes import (
    StreamHasher,
    autov1_file,
    embedded_model_hash,
    hash_file,
    sha256_file,
    tensor_sha256_file,
    valid_hash,
)

MIB = 1 << 20


def _ref_autov1(data: bytes) -> str | None:
    window = data[0x100000:0x110000]
    return hashlib.sha256(window).hexdigest()[:8] if window else None


def _ref_tensor(data: bytes) -> str:
    n = struct.unpack("<Q", data[:8])[0]
    return hashlib.sha256(data[8 + n :]).hexdigest()


@pytest.mark.parametrize("size", [0, 11, MIB - 1, MIB, MIB + 5, MIB + 0x10000 + 3, 3 * MIB + 17])
def test_raw_file_hashes_match_hashlib(tmp_path, size):
    data = random.Random(size).randbytes(size)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    h = hash_file(path, crc32=True)
    assert h.size == size
    assert h.sha256 == hashlib.sha256(data).hexdigest()
    assert h.autov2 == hashlib.sha256(data).hexdigest()[:10]
    assert h.autov1 == _ref_autov1(data)
    assert h.tensor_sha256 is None  # not .safetensors → no AutoV3 by default
    import zlib

    assert h.crc32 == struct.pack("<I", zlib.crc32(data)).hex()
    assert sha256_file(path) == h.sha256
    assert autov1_file(path) == h.autov1


def test_civitai_hello_world_vector(tmp_path):
    path = tmp_path / "hello.bin"
    path.write_bytes(b"hello world")
    h = hash_file(path, crc32=True)
    assert h.sha256.upper() == "B94D27B9934D3E08A52E52D7DA7DABFAC484EFE37A5380EE9088F7ACE2EFCDE9"
    assert h.autov2.upper() == "B94D27B993"
    assert h.crc32.upper() == "85114A0D"  # Civitai's little-endian rendering
    assert h.autov1 is None


def _lora_file(path, metadata, seed=0, n=3, dim=300):
    g = torch.Generator().manual_seed(seed)
    tensors = {f"lora_unet_m{i}.lora_down.weight": torch.randn(4, dim, generator=g) for i in range(n)}
    save_file(tensors, str(path), metadata=metadata)
    return path.read_bytes()


def test_autov3_is_sha256_of_tensor_data_and_survives_metadata_edits(tmp_path):
    a = _lora_file(tmp_path / "a.safetensors", {"ss_output_name": "a"})
    b = _lora_file(tmp_path / "b.safetensors", {"ss_output_name": "a much longer name", "x": "y"})
    ha, hb = hash_file(tmp_path / "a.safetensors"), hash_file(tmp_path / "b.safetensors")
    assert ha.tensor_sha256 == _ref_tensor(a)
    assert hb.tensor_sha256 == _ref_tensor(b)
    assert ha.tensor_sha256 == hb.tensor_sha256  # same tensors, different header
    assert ha.sha256 != hb.sha256
    assert ha.autov3 == _ref_tensor(a)[:12]
    assert ha.lora_hash() == ha.autov3
    assert tensor_sha256_file(tmp_path / "a.safetensors") == ha.tensor_sha256


def test_big_safetensors_all_hashes_one_pass(tmp_path):
    data = _lora_file(tmp_path / "big.safetensors", {"k": "v"}, n=8, dim=20000)  # ~2.5 MiB
    assert len(data) > 2 * MIB
    h = hash_file(tmp_path / "big.safetensors")
    assert (h.sha256, h.autov1, h.tensor_sha256) == (
        hashlib.sha256(data).hexdigest(),
        _ref_autov1(data),
        _ref_tensor(data),
    )


def test_stream_hasher_any_chunking(tmp_path):
    data = _lora_file(tmp_path / "x.safetensors", {"a": "b"}, n=40, dim=2000)
    rng = random.Random(1)
    hasher = StreamHasher(crc32=True)
    pos = 0
    while pos < len(data):  # chunks of 1..7 bytes at the start, to split the 8-byte length, then bigger
        step = rng.randint(1, 7) if pos < 64 else rng.randint(1, 200_000)
        hasher.update(data[pos : pos + step])
        pos += step
    h = hasher.result()
    assert h.sha256 == hashlib.sha256(data).hexdigest()
    assert h.tensor_sha256 == _ref_tensor(data)
    assert h.autov1 == _ref_autov1(data)


def test_pickle_lora_uses_full_sha256(tmp_path):
    path = tmp_path / "old.ckpt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", os.urandom(5000))
    h = hash_file(path)
    assert h.tensor_sha256 is None
    assert h.lora_hash() == hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert tensor_sha256_file(path) is None  # zip bytes decode to an impossible header length


def test_streamed_not_whole_file_in_memory(tmp_path):
    path = tmp_path / "big.bin"
    with path.open("wb") as f:
        for i in range(16):
            f.write(random.Random(i).randbytes(MIB))
    tracemalloc.start()
    hash_file(path, tensor_hash=True, crc32=True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 * MIB  # a 16 MiB file hashed with one 1 MiB buffer


def test_progress_reports_bytes(tmp_path):
    path = tmp_path / "p.bin"
    path.write_bytes(b"\0" * (2 * MIB + 10))
    seen = []
    hash_file(path, on_bytes=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (2 * MIB + 10, 2 * MIB + 10)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_valid_hash_rejects_empty_input_hash():
    empty = hashlib.sha256(b"").hexdigest()
    assert valid_hash(empty) is None
    assert valid_hash(empty[:12].upper()) is None
    assert valid_hash("0xABCDEF0123") == "abcdef0123"
    assert valid_hash("not hex") is None
    assert valid_hash("") is None
    assert embedded_model_hash({"sshs_model_hash": empty}) is None
    assert embedded_model_hash({"sshs_model_hash": "AB" * 32}) == "ab" * 32
