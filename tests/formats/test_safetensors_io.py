"""safetensors header validation: good files agree with safetensors itself, hostile headers raise FormatError."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from loradeck.errors import FormatError
from loradeck.formats.pickle_safe import load_pickle_state_dict
from loradeck.formats.safetensors_io import load_tensors, read_header


def _write_raw(path, header: dict, data: bytes, length: int | None = None) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)


@pytest.fixture
def good(tmp_path):
    p = tmp_path / "good.safetensors"
    tensors = {
        "a": torch.randn(3, 4),
        "b": torch.arange(5, dtype=torch.int16),
        "s": torch.tensor(2.5, dtype=torch.float16),
    }
    save_file(tensors, p, metadata={"ss_network_dim": "4"})
    return p, tensors


def test_header_matches_file(good):
    p, tensors = good
    h = read_header(p)
    assert h.metadata == {"ss_network_dim": "4"}
    assert h.tensors["a"].dtype == "F32" and h.tensors["a"].shape == (3, 4)
    assert h.tensors["s"].shape == () and h.tensors["s"].end - h.tensors["s"].start == 2
    raw = p.read_bytes()
    a = h.tensors["a"]
    assert torch.equal(torch.frombuffer(bytearray(raw[a.start : a.end]), dtype=torch.float32).view(3, 4), tensors["a"])
    assert max(t.end for t in h.tensors.values()) == len(raw)


def test_load_tensors_equals_safetensors(good):
    p, _ = good
    ours, ref = load_tensors(p), load_file(p)
    assert ours.keys() == ref.keys() and all(torch.equal(ours[k], ref[k]) for k in ref)
    assert list(load_tensors(p, keys=["b"])) == ["b"]
    with pytest.raises(FormatError, match="no tensor named"):
        load_tensors(p, keys=["zz"])


def test_huge_header_length_rejected_before_reading(tmp_path):
    p = tmp_path / "huge.safetensors"
    _write_raw(p, {}, b"", length=10 * 1024**3)
    with pytest.raises(FormatError, match="huge.safetensors.*10737418240 bytes"):
        read_header(p)


def test_header_longer_than_file(tmp_path):
    p = tmp_path / "short.safetensors"
    _write_raw(p, {}, b"", length=5000)
    with pytest.raises(FormatError, match="only"):
        read_header(p)


@pytest.mark.parametrize(
    "header,data,match",
    [
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4, "truncated"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 12]}}, b"\0" * 12, "needs 8"),
        (
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            b"\0" * 12,
            "overlaps",
        ),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, "gap"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 16, "unexpected bytes"),
        ({"a": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, "unknown dtype"),
        ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, "invalid shape"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8, "invalid data_offsets"),
        ({"__metadata__": {"x": 1}}, b"", "map of strings"),
        ([1, 2], b"", "not a JSON object"),
    ],
)
def test_lying_headers(tmp_path, header, data, match):
    p = tmp_path / "bad.safetensors"
    _write_raw(p, header, data)
    with pytest.raises(FormatError, match=match) as err:
        load_tensors(p)
    assert "bad.safetensors" in str(err.value)


def test_invalid_json_and_truncated_real_file(tmp_path, good):
    p = tmp_path / "junk.safetensors"
    p.write_bytes(struct.pack("<Q", 5) + b"{nope")
    with pytest.raises(FormatError, match="not valid JSON"):
        read_header(p)
    src, _ = good
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(src.read_bytes()[:-3])
    with pytest.raises(FormatError, match="truncated"):
        load_tensors(cut)
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(b"\1\2")
    with pytest.raises(FormatError, match="too short"):
        read_header(tiny)


def test_pickle_safe_unwraps_state_dict(tmp_path):
    sd = {"x.weight": torch.randn(2, 2)}
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "a.ckpt")
    torch.save(sd, tmp_path / "b.pt")
    for name in ("a.ckpt", "b.pt"):
        got = load_pickle_state_dict(tmp_path / name)
        assert torch.equal(got["x.weight"], sd["x.weight"])


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_safe_refuses_code(tmp_path):
    torch.save({"x": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(FormatError, match="evil.pt.*not a safely loadable"):
        load_pickle_state_dict(tmp_path / "evil.pt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a pickle at all")
    with pytest.raises(FormatError, match="junk.ckpt"):
        load_pickle_state_dict(tmp_path / "junk.ckpt")
