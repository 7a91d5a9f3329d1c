"""Every key spelling in use normalises to the same kohya module; family detection; header-only summaries."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from conftest import kohya_lora
from loradeck.families import Family
from loradeck.formats.safetensors_io import read_header
from loradeck.lora.formats import detect_lora_family, load_lora, split_key
from loradeck.lora.inspect import describe_header, inspect_lora

Q = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
OUT = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0"
TEQ = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"


@pytest.mark.parametrize(
    "key,module,param",
    [
        (f"{Q}.lora_down.weight", Q, "lora_down.weight"),
        (f"{Q}.lora_A.weight", Q, "lora_down.weight"),
        (f"{Q}.lora_B.default.weight", Q, "lora_up.weight"),
        ("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight", Q, "lora_down.weight"),
        ("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.default.weight", Q, "lora_up.weight"),
        ("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.up.weight", Q, "lora_up.weight"),
        (
            "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight",
            Q,
            "lora_down.weight",
        ),
        (
            "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.up.weight",
            OUT,
            "lora_up.weight",
        ),
        (
            "base_model.model.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight",
            Q,
            "lora_down.weight",
        ),
        (
            "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_linear_layer.up.weight",
            TEQ,
            "lora_up.weight",
        ),
        ("text_encoder.encoder.layers.0.self_attn.q_proj.lora_B.weight", TEQ, "lora_up.weight"),
        ("base_model.model.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight", TEQ, "lora_down.weight"),
        ("lycoris_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lokr_w1", Q, "lokr_w1"),
        (f"{Q}.alpha", Q, "alpha"),
        (
            "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight",
            "lora_te2_text_model_encoder_layers_0_self_attn_q_proj",
            "lora_down.weight",
        ),
    ],
)
def test_key_spellings(key, module, param):
    got = split_key(key)
    assert got is not None and got[:2] == (module, param)


def test_family_from_shapes():
    def lora(ctx):
        return {
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k": {
                "lora_down.weight": (4, ctx),
                "lora_up.weight": (320, 4),
            }
        }

    assert detect_lora_family(lora(768)) is Family.SD1
    assert detect_lora_family(lora(1024)) is Family.SD2
    assert detect_lora_family(lora(2048)) is Family.SDXL
    assert detect_lora_family(lora(64)) is Family.DEMO
    assert detect_lora_family({TEQ: {"lora_down.weight": (4, 1024), "lora_up.weight": (1024, 4)}}) is Family.SD2
    assert detect_lora_family({"lora_te1_x": {"lora_down.weight": (4, 8), "lora_up.weight": (8, 4)}}) is Family.SDXL
    assert detect_lora_family({"x": {"diff": (3,)}}) is Family.UNKNOWN


def test_describe_header_and_inspect_agree_with_loaded_file(sd1_small, tmp_path):
    comps, km = sd1_small
    sd = kohya_lora(comps, km, rank=4, alpha=2.0, dtype=torch.float16)
    # a reduced model has SD1's names but not SD1's widths: give the attn2 to_k module the SD1 context width
    k = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    sd[f"{k}.lora_down.weight"] = torch.zeros(4, 768, dtype=torch.float16)
    sd["junk_key"] = torch.zeros(1)
    path = tmp_path / "style.safetensors"
    save_file(sd, str(path), metadata={"ss_output_name": "style", "ss_network_dim": "4"})
    summary = describe_header(read_header(path), path)
    assert (summary.format, summary.family, summary.rank, summary.alpha, summary.module_count) == (
        "lora",
        Family.SD1,
        4,
        2.0,
        264,
    )
    info = inspect_lora(path)
    lora = load_lora(path)
    assert info["format"] == lora.format == "lora" and info["family"] == "sd1"
    assert info["modules_matched"] == 264 and info["modules_total"] == 264 and info["unmatched_keys"] == ["junk_key"]
    assert info["rank"] == 4 and info["alpha"] == 2.0 and info["metadata"]["ss_output_name"] == "style"
