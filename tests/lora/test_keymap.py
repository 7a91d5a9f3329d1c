"""Every kohya module name of SD1.5 / SD2 / SDXL resolves to a real module of models built from the shipped configs."""

from __future__ import annotations

from importlib import resources

import pytest
from accelerate import init_empty_weights
from diffusers import UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from loradeck.families import Family
from loradeck.lora.keymap import keymap_for_family, keymap_from_models


def _models(family: Family) -> dict:
    d = resources.files("loradeck") / "configs" / family.config_dir
    with init_empty_weights():  # full-size architecture, no memory
        comps = {"unet": UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(d / "unet")))}
        comps["te1"] = CLIPTextModel(CLIPTextConfig.from_json_file(str(d / "text_encoder" / "config.json")))
        if family is Family.SDXL:
            te2 = CLIPTextConfig.from_json_file(str(d / "text_encoder_2" / "config.json"))
            comps["te2"] = CLIPTextModelWithProjection(te2)
    return comps


@pytest.mark.parametrize(
    "family,te,unet,unet_conv",
    [(Family.SD1, 72, 192, 278), (Family.SD2, 138, 192, 278), (Family.SDXL, 264, 722, 788)],
)
def test_counts_and_every_name_resolves(family, te, unet, unet_conv):
    km = keymap_for_family(family)
    comps = _models(family)
    assert sum(r.component != "unet" for r in km.modules.values()) == te
    assert sum(r.component == "unet" for r in km.modules.values()) == unet
    assert unet + len(km.conv_modules) == unet_conv
    for name, ref in km.all_modules().items():
        module = comps[ref.component].get_submodule(ref.path)  # raises if the path is not real
        assert hasattr(module, "weight"), name
    # loaded-model configs give the same map as the shipped ones
    tes = {k: v for k, v in comps.items() if k != "unet"}
    assert keymap_from_models(family, comps["unet"], tes).modules == km.modules


def test_fact_sheet_examples():
    sd1, sdxl = keymap_for_family(Family.SD1), keymap_for_family(Family.SDXL)
    assert sd1.resolve("lora_te_text_model_encoder_layers_11_mlp_fc2").path == "encoder.layers.11.mlp.fc2"
    # A1111's compvis spellings of SD1 names (docs/reference/lora-formats.md §5.1 worked examples)
    pairs = {
        "lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q": "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
        "lora_unet_output_blocks_5_1_proj_out": "up_blocks.1.attentions.2.proj_out",
        "lora_unet_middle_block_2_out_layers_3": "mid_block.resnets.1.conv2",
        "lora_unet_output_blocks_2_1_conv": "up_blocks.0.upsamplers.0.conv",
        "lora_unet_input_blocks_9_0_op": "down_blocks.2.downsamplers.0.conv",
    }
    for name, path in pairs.items():
        assert sd1.resolve(name).path == path, name
    assert sd1.canonical("lora_unet_output_blocks_5_1_proj_out") == "lora_unet_up_blocks_1_attentions_2_proj_out"
    # SDXL: SGM names are canonical; TE2 is CLIPTextModelWithProjection (keeps text_model)
    assert sdxl.resolve("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q").path == (
        "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"
    )
    assert sdxl.resolve("lora_unet_middle_block_1_transformer_blocks_9_ff_net_2").path == (
        "mid_block.attentions.0.transformer_blocks.9.ff.net.2"
    )
    assert sdxl.resolve("lora_unet_output_blocks_2_2_conv").path == "up_blocks.0.upsamplers.0.conv"
    assert sdxl.resolve("lora_te2_text_model_encoder_layers_31_self_attn_out_proj").path == (
        "text_model.encoder.layers.31.self_attn.out_proj"
    )
    assert sdxl.resolve("lora_te1_text_model_encoder_layers_0_self_attn_q_proj").component == "te1"
    assert "lora_unet_output_blocks_5_1_proj_out" in sdxl.modules


def test_demo_keymap_resolves_on_demo_model():
    from diffusers import UNet2DConditionModel as U

    from loradeck.demo.build import text_config, unet_config

    km = keymap_for_family(Family.DEMO)
    comps = {"unet": U(**unet_config()), "te1": CLIPTextModel(CLIPTextConfig(**text_config(50, 0, 1)))}
    for ref in km.all_modules().values():
        comps[ref.component].get_submodule(ref.path)
    assert sum(r.component == "te1" for r in km.modules.values()) == 12
