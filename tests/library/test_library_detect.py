"""Header-only detection helpers of the library (metadata rules, fallback summary, checkpoints, diffusers folders)."""

from __future__ import annotations

import json

import pytest
from library_helpers import write_checkpoint, write_diffusers_dir, write_lora

from loradeck.families import Family
from loradeck.formats.safetensors_io import read_header
from loradeck.library.detect import (
    Summary,
    _fallback_summary,
    decode_metadata,
    family_from_metadata,
    summarize_checkpoint,
    summarize_diffusers_dir,
    summarize_lora,
)


def test_decode_metadata_like_a1111():
    md = {"a": '{"x": 1}', "b": "32", "c": "{not json", "d": "[1, 2]"}
    assert decode_metadata(md) == {"a": {"x": 1}, "b": "32", "c": "{not json", "d": "[1, 2]"}


@pytest.mark.parametrize(
    "md, fam",
    [
        ({"modelspec.architecture": "stable-diffusion-xl-v1-base/lora"}, Family.SDXL),
        ({"modelspec.architecture": "stable-diffusion-v2-768-v/lora"}, Family.SD2),
        ({"ss_base_model_version": "sd_v1"}, Family.SD1),
        ({"ss_v2": "False"}, Family.UNKNOWN),  # no explicit marker; A1111's SD1 default is applied later
        ({}, Family.UNKNOWN),
    ],
)
def test_family_from_metadata(md, fam):
    assert family_from_metadata(md) is fam


def test_fallback_summary_from_keys(tmp_path):
    xl = read_header(write_lora(tmp_path / "xl.safetensors", te="lora_te1", rank=6))
    s = _fallback_summary(xl)
    assert (s.family, s.format, s.rank, s.module_count) == (Family.SDXL, "lora", 6, 2)
    plain = read_header(write_lora(tmp_path / "p.safetensors", {"ss_network_alpha": "3"}))
    s = _fallback_summary(plain)
    assert (s.family, s.alpha) == (Family.SD1, 3.0)  # TE width 768 → SD1


def test_summarize_lora_uses_metadata_when_keys_say_nothing(tmp_path):
    path = write_lora(tmp_path / "x.safetensors", {"ss_base_model_version": "sd_v2"})
    s = summarize_lora(read_header(path), path)
    assert s.family is Family.SD2 and s.rank == 4
    assert Summary.from_json(s.to_json()) == s


def test_checkpoint_and_diffusers_family(tmp_path):
    assert summarize_checkpoint(read_header(write_checkpoint(tmp_path / "a.safetensors"))).family is Family.SD1
    folder = write_diffusers_dir(tmp_path / "d", "sd2")
    assert summarize_diffusers_dir(folder).family is Family.SD2
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "loradeck_family": "demo"}))
    assert summarize_diffusers_dir(folder).family is Family.DEMO
