"""Embeddings bundled in a LoRA file (A1111 1.7+ ``bundle_emb.NAME.…``): parsed into the LoraFile, not counted as
unmatched keys, refused with one sentence when broken, and carried over by a lossless kohya rename."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import build_small_sd1, kohya_lora
from loradeck.errors import FormatError
from loradeck.families import Family
from loradeck.lora.formats import parse_state_dict
from loradeck.lora.ops.convert import kohya_renamed


def _t(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_bundled_embeddings_are_read_in_each_layout():
    components, keymap = build_small_sd1()
    sd = kohya_lora(components, keymap, rank=2)
    sd |= {
        "bundle_emb.negpt.string_to_param.*": _t(3, 768, seed=1),  # an A1111 .pt, flattened
        "bundle_emb.xlneg.clip_l": _t(2, 768, seed=2),
        "bundle_emb.xlneg.clip_g": _t(2, 1280, seed=3),
        "bundle_emb.kohya.emb_params": _t(1, 768, seed=4),
        "bundle_emb.lonely": _t(1, 768),  # names no embedding key: left over, as any unknown key
    }
    lora = parse_state_dict(Path("pack.safetensors"), sd, {})
    got = {n: (e.family, e.vectors, e.shape) for n, e in lora.embeddings.items()}
    assert got == {"negpt": (Family.SD1, 3, 768), "xlneg": (Family.SDXL, 2, 2048), "kohya": (Family.SD1, 1, 768)}
    assert torch.equal(lora.embeddings["xlneg"].parts[1], _t(2, 1280, seed=3))
    assert lora.unparsed_keys == ["bundle_emb.lonely"]
    assert lora.embeddings["negpt"].source == "pack.safetensors/negpt"

    renamed, _notes = kohya_renamed(lora)
    again = parse_state_dict(Path("renamed.safetensors"), renamed, {})
    assert again.embeddings.keys() == lora.embeddings.keys()
    for name, emb in lora.embeddings.items():
        assert all(torch.equal(a, b) for a, b in zip(emb.parts, again.embeddings[name].parts, strict=True))


def test_a_broken_bundled_embedding_is_one_sentence():
    sd = {"lora_unet_x.lora_down.weight": _t(2, 4), "lora_unet_x.lora_up.weight": _t(4, 2)}
    sd["bundle_emb.bad.emb_params"] = torch.full((1, 768), float("inf"))
    with pytest.raises(FormatError) as err:
        parse_state_dict(Path("pack.safetensors"), sd, {})
    assert str(err.value).startswith("pack.safetensors/bad: tensor 'emb_params' contains NaN or infinite values")
