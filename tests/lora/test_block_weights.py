"""LoRA Block Weight tables: the extension's presets and layouts, preset files, and the block of every module."""

from __future__ import annotations

import re

import pytest

from loradeck.errors import InvalidRequest
from loradeck.families import Family
from loradeck.lora.block_weights import (
    BLOCK_IDS,
    BUILTIN_PRESETS,
    block_table,
    load_presets,
    parse_presets,
    resolve,
)
from loradeck.lora.keymap import keymap_for_family

# The extension's published defaults (its README and DEF_WEIGHT_PRESET), written out by hand in block ids.
_17 = "BASE IN01 IN02 IN04 IN05 IN07 IN08 M00 OUT03 OUT04 OUT05 OUT06 OUT07 OUT08 OUT09 OUT10 OUT11".split()
ON = {
    "NONE": [],
    "ALL": _17,
    "INS": "BASE IN01 IN02 IN04".split(),
    "IND": "BASE IN05 IN07 IN08".split(),
    "INALL": "BASE IN01 IN02 IN04 IN05 IN07 IN08".split(),
    "MIDD": "BASE IN05 IN07 IN08 M00 OUT03 OUT04 OUT05 OUT06".split(),
    "OUTD": "BASE OUT03 OUT04 OUT05 OUT06".split(),
    "OUTS": "BASE OUT07 OUT08 OUT09 OUT10 OUT11".split(),
    "OUTALL": "BASE OUT03 OUT04 OUT05 OUT06 OUT07 OUT08 OUT09 OUT10 OUT11".split(),
}


@pytest.mark.parametrize("name", sorted(ON))
def test_builtin_presets_are_the_extensions(name):
    bw = resolve(name, BUILTIN_PRESETS, "<lora:x:1>")
    assert bw.layout == 17
    assert {BLOCK_IDS[i] for i, v in enumerate(bw.values) if v == 1.0} == set(ON[name])
    assert all(v in (0.0, 1.0) for v in bw.values)


def test_all_half_preset():
    bw = resolve("ALL0.5", BUILTIN_PRESETS, "t")
    assert {BLOCK_IDS[i] for i, v in enumerate(bw.values) if v == 0.5} == set(_17)


@pytest.mark.parametrize(
    ("n", "ids"),
    [
        (17, _17),
        (12, "BASE IN04 IN05 IN07 IN08 M00 OUT00 OUT01 OUT02 OUT03 OUT04 OUT05".split()),
        (20, ["BASE"] + [f"IN{i:02d}" for i in range(9)] + ["M00"] + [f"OUT{i:02d}" for i in range(9)]),
        (26, list(BLOCK_IDS)),
    ],
)
def test_layouts_spread_onto_the_26_blocks(n, ids):
    vector = [round(0.1 * (i + 1), 1) for i in range(n)]
    bw = resolve(",".join(map(str, vector)), {}, "t")
    assert bw.layout == n
    want = dict.fromkeys(BLOCK_IDS, 0.0) | dict(zip(ids, vector, strict=True))
    assert dict(zip(BLOCK_IDS, bw.values, strict=True)) == want


def test_user_preset_file(tmp_path):
    path = tmp_path / "lbwpresets.txt"
    path.write_text(
        "MINE:1,0,0,0,0,0,0,0,0,0,0,0.5,0.5,0.5,0.5,0.5,0.5\n"
        "# COMMENTED:1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1\n"
        "SHORT:1,1,1\n"
        "XL:1,1,1,1,1,1,0,0,0,0,0,0\n"
        "ALL:0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0\n"
        "just a note\n"
    )
    presets = load_presets(path)
    assert {"MINE", "XL"} <= presets.keys() and "SHORT" not in presets and "# COMMENTED" not in presets
    assert presets["ALL"] == "0" + ",0" * 16  # the user's file overrides a built-in of the same name
    assert presets["OUTS"] == BUILTIN_PRESETS["OUTS"]
    assert resolve("XL", presets, "t").layout == 12
    assert parse_presets("A : 1,1,1,1,1,1,1,1,1,1,1,1 ") == {"A": "1,1,1,1,1,1,1,1,1,1,1,1"}
    assert load_presets(tmp_path / "missing.txt") == BUILTIN_PRESETS


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("NOPE", "neither a block-weight preset"),
        ("1,0,1", "has 3 weights"),
        ("R,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1", "random/inherited entry 'R'"),
        ("1,U,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1", "random/inherited entry 'U'"),
        ("X,1,1,1,1,1,1,1,1,1,1,1", "random/inherited entry 'X'"),
        ("1,a,1,1,1,1,1,1,1,1,1,1", "'a' of lbw="),
        ("all", "neither a block-weight preset"),  # case-sensitive, as in the extension
    ],
)
def test_refused_values_name_the_tag(value, words):
    with pytest.raises(InvalidRequest, match=re.escape(words)) as err:
        resolve(value, BUILTIN_PRESETS, "<lora:x:1:lbw=…>")
    assert "<lora:x:1:lbw=…>" in str(err.value)


def _expected_block(ref) -> str | None:
    """The SGM block of a module from its diffusers path, by the SD1/SDXL U-Net's numbering (2 layers per level:
    input_blocks 1+3i+j and downsampler 3i+3; output_blocks 3i+j and upsampler 3i+2), written out independently."""
    if ref.component != "unet":
        return "BASE"
    p = ref.path
    if p.startswith("conv_in"):
        return "IN00"
    if m := re.match(r"down_blocks\.(\d+)\.(?:resnets|attentions)\.(\d+)\.", p):
        return f"IN{1 + 3 * int(m[1]) + int(m[2]):02d}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.", p):
        return f"IN{3 * int(m[1]) + 3:02d}"
    if p.startswith("mid_block."):
        return "M00"
    if m := re.match(r"up_blocks\.(\d+)\.(?:resnets|attentions)\.(\d+)\.", p):
        return f"OUT{3 * int(m[1]) + int(m[2]):02d}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.", p):
        return f"OUT{3 * int(m[1]) + 2:02d}"
    return None


@pytest.mark.parametrize("family", [Family.SD1, Family.SD2, Family.SDXL])
def test_every_module_sits_in_its_block(family):
    keymap = keymap_for_family(family)
    table = block_table(keymap)
    modules = keymap.all_modules()
    assert table.keys() == modules.keys()
    for name, ref in modules.items():
        got = table[name]
        assert (BLOCK_IDS[got] if got is not None else None) == _expected_block(ref), name
    # the kohya default set (attention + text encoder) covers exactly the 17-entry layout on SD1, 12 on SDXL
    attn = {BLOCK_IDS[table[n]] for n in keymap.modules}
    want = _17 if family is not Family.SDXL else "BASE IN04 IN05 IN07 IN08 M00 OUT00 OUT01 OUT02 OUT03 OUT04 OUT05"
    assert attn == set(want if isinstance(want, list) else want.split())


def test_known_names():
    sd1, sdxl = block_table(keymap_for_family(Family.SD1)), block_table(keymap_for_family(Family.SDXL))
    assert BLOCK_IDS[sd1["lora_unet_down_blocks_0_attentions_1_proj_in"]] == "IN02"
    assert BLOCK_IDS[sd1["lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_attn2_to_k"]] == "OUT11"
    assert BLOCK_IDS[sd1["lora_unet_down_blocks_3_resnets_1_conv2"]] == "IN11"
    assert BLOCK_IDS[sd1["lora_te_text_model_encoder_layers_11_mlp_fc2"]] == "BASE"
    assert BLOCK_IDS[sdxl["lora_unet_input_blocks_8_1_transformer_blocks_9_ff_net_2"]] == "IN08"
    assert BLOCK_IDS[sdxl["lora_unet_output_blocks_2_2_conv"]] == "OUT02"
    assert BLOCK_IDS[sdxl["lora_te2_text_model_encoder_layers_31_self_attn_q_proj"]] == "BASE"
    assert sdxl["lora_unet_time_embed_0"] is None and sdxl["lora_unet_label_emb_0_0"] is None
