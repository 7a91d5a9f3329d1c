"""formats.ldm_keys / ldm_configs / ldm_family: the single-file layout against diffusers' own converters."""

from __future__ import annotations

import pytest
import torch
from diffusers.loaders import single_file_utils as ref

from loradeck.errors import ModelLoadError
from loradeck.families import Family
from loradeck.formats.ldm_configs import infer_configs, shipped_configs
from loradeck.formats.ldm_family import detect_checkpoint_family
from loradeck.formats.ldm_keys import (
    diffusers_unet_module_to_ldm,
    ldm_unet_module_to_diffusers,
    to_diffusers,
    to_ldm,
)
from tests.helpers.checkpoints import FAMILY_OF, build_components, model_configs

NAMES = ["sd15", "sd2v", "sdxl"]
TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")  # set by the loader from the tokenizer, not shapes


@pytest.fixture(scope="module", params=NAMES)
def ldm(request):
    name = request.param
    return name, to_ldm(build_components(name, model_configs(name)), FAMILY_OF[name])


def _shapes(sd):
    return {k: tuple(v.shape) for k, v in sd.items()}


def test_round_trip_is_identity(ldm):
    name, sd = ldm
    back = to_ldm(to_diffusers(sd, FAMILY_OF[name]), FAMILY_OF[name])
    assert back.keys() == sd.keys()
    assert all(torch.equal(back[k], sd[k]) and back[k].dtype == sd[k].dtype for k in sd)


def test_unet_and_vae_match_diffusers_converter(ldm):
    name, sd = ldm
    configs = infer_configs(_shapes(sd), FAMILY_OF[name], "v" if name == "sd2v" else "epsilon")
    ours = to_diffusers(sd, FAMILY_OF[name])
    theirs_unet = ref.convert_ldm_unet_checkpoint(dict(sd), configs["unet"])
    assert ours["unet"].keys() == theirs_unet.keys()
    assert all(torch.equal(ours["unet"][k], theirs_unet[k]) for k in theirs_unet)
    theirs_vae = ref.convert_ldm_vae_checkpoint(dict(sd), configs["vae"])
    assert ours["vae"].keys() == theirs_vae.keys()
    assert all(torch.equal(ours["vae"][k], theirs_vae[k]) for k in theirs_vae)


def test_text_encoders_match_diffusers_converter(ldm):
    name, sd = ldm
    family = FAMILY_OF[name]
    ours = to_diffusers(sd, family)
    if family in (Family.SD1, Family.SDXL):
        prefix = "cond_stage_model.transformer." if family == Family.SD1 else "conditioner.embedders.0.transformer."
        theirs = ref.convert_ldm_clip_checkpoint({k: v for k, v in sd.items() if k.startswith(prefix)}, prefix)
        theirs = {k.removeprefix("text_model."): v for k, v in theirs.items() if "position_ids" not in k}
        assert ours["text_encoder"].keys() == theirs.keys()
        assert all(torch.equal(ours["text_encoder"][k], theirs[k]) for k in theirs)
    if family in (Family.SD2, Family.SDXL):
        comp = "text_encoder" if family == Family.SD2 else "text_encoder_2"
        prefix = "cond_stage_model.model." if family == Family.SD2 else "conditioner.embedders.1.model."
        cfg = model_configs(name)[comp]

        class _Cfg:  # the converter only reads hidden_size from the model
            config = type("C", (), {"hidden_size": cfg["hidden_size"]})

        theirs = ref.convert_open_clip_checkpoint(_Cfg, sd, prefix=prefix)
        mine = {
            ("text_model." + k if not k.startswith(("text_model.", "text_projection")) else k): v
            for k, v in ours[comp].items()
        }
        if family == Family.SD2:  # SD 2 runs all OpenCLIP blocks but the last, and has no projection layer
            last = f".layers.{cfg['num_hidden_layers']}."
            theirs = {k: v for k, v in theirs.items() if last not in k and k != "text_projection.weight"}
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


def test_configs_read_from_shapes_equal_the_ones_written(ldm):
    name, sd = ldm
    configs = infer_configs(_shapes(sd), FAMILY_OF[name], "v" if name == "sd2v" else "epsilon")
    for comp, want in model_configs(name).items():
        if comp in ("unet", "vae", "text_encoder", "text_encoder_2"):
            got = configs[comp]
            keys = [k for k in want if not k.startswith("_") and k not in TOKEN_IDS]
            assert {k: got.get(k) for k in keys} == {k: want[k] for k in keys}, comp


def test_full_size_configs_give_back_shipped_configs():
    """With shapes from the shipped configs (meta models, no memory), the inferred configs are the shipped ones."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    for name in ("sd15", "sd2", "sd2v", "sdxl"):
        cfgs = shipped_configs(name)
        with init_empty_weights():
            comps = {
                "unet": UNet2DConditionModel.from_config(cfgs["unet"]).state_dict(),
                "vae": AutoencoderKL.from_config(cfgs["vae"]).state_dict(),
            }
            for comp in ("text_encoder", "text_encoder_2"):
                if comp in cfgs:
                    te = {k: v for k, v in cfgs[comp].items() if not k.startswith("_")}
                    if name.startswith("sd2"):
                        te["num_hidden_layers"] = 24  # OpenCLIP-H as stored: SD 2 runs 23 of 24 blocks
                    cls = CLIPTextModelWithProjection if comp == "text_encoder_2" else CLIPTextModel
                    comps[comp] = cls(CLIPTextConfig(**te)).state_dict()
        family = FAMILY_OF[name]
        shapes = {k: tuple(v.shape) for k, v in to_ldm(comps, family).items()}
        got = infer_configs(shapes, family, "v" if name == "sd2v" else "epsilon")
        for comp in ("unet", "vae", "text_encoder", "text_encoder_2"):
            if comp in cfgs:
                want = {k: v for k, v in cfgs[comp].items() if not k.startswith("_")}
                assert {k: got[comp].get(k) for k in want} == want, (name, comp)


@pytest.mark.parametrize(
    "name, ldm, diffusers",
    [  # docs/reference/lora-formats.md §5.1 worked examples (module names), and SDXL from §4.3
        (
            "sd15",
            "input_blocks.1.1.transformer_blocks.0.attn1.to_q",
            "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
        ),
        ("sd15", "output_blocks.5.1.proj_out", "up_blocks.1.attentions.2.proj_out"),
        ("sd15", "middle_block.2.out_layers.3", "mid_block.resnets.1.conv2"),
        ("sd15", "output_blocks.2.1.conv", "up_blocks.0.upsamplers.0.conv"),
        ("sd15", "input_blocks.9.0.op", "down_blocks.2.downsamplers.0.conv"),
        ("sd15", "input_blocks.4.0.skip_connection", "down_blocks.1.resnets.0.conv_shortcut"),
        (
            "sdxl",
            "input_blocks.4.1.transformer_blocks.1.attn2.to_k",
            "down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k",
        ),
        (
            "sdxl",
            "middle_block.1.transformer_blocks.9.ff.net.2",
            "mid_block.attentions.0.transformer_blocks.9.ff.net.2",
        ),
        ("sdxl", "output_blocks.2.2.conv", "up_blocks.0.upsamplers.0.conv"),
        ("sdxl", "output_blocks.8.0.emb_layers.1", "up_blocks.2.resnets.2.time_emb_proj"),
        ("sdxl", "label_emb.0.2", "add_embedding.linear_2"),
    ],
)
def test_unet_module_names(name, ldm, diffusers):
    cfg = shipped_configs(name)["unet"]
    assert ldm_unet_module_to_diffusers(ldm, cfg) == diffusers
    assert ldm_unet_module_to_diffusers("model.diffusion_model." + ldm + ".weight", cfg) == diffusers + ".weight"
    assert diffusers_unet_module_to_ldm(diffusers, cfg) == ldm


# ------------------------------------------------------------------------------------------------ family detection
def test_detect_family(ldm):
    name, sd = ldm
    family, pred = detect_checkpoint_family(sd.keys(), _shapes(sd))
    assert family == FAMILY_OF[name]
    assert pred == ("v" if family == Family.SD2 else "epsilon")  # SD 2.x defaults to v (documented)


def test_prediction_hints():
    sd = to_ldm(build_components("sd2v", model_configs("sd2v")), Family.SD2)
    keys, shapes = list(sd), _shapes(sd)
    base_yaml = "model:\n  params:\n    linear_start: 0.00085\n"
    v_yaml = 'model:\n  params:\n    parameterization: "v"\n'
    assert detect_checkpoint_family(keys, shapes, sidecar_yaml=base_yaml) == (Family.SD2, "epsilon")
    assert detect_checkpoint_family(keys, shapes, sidecar_yaml=v_yaml) == (Family.SD2, "v")
    assert detect_checkpoint_family(keys, shapes, metadata={"modelspec.prediction_type": "epsilon"}) == (
        Family.SD2,
        "epsilon",
    )
    xl = to_ldm(build_components("sdxl", model_configs("sdxl")), Family.SDXL)
    assert detect_checkpoint_family([*xl, "v_pred"], _shapes(xl)) == (Family.SDXL, "v")


def test_detect_family_refuses_what_it_cannot_load():
    sd1 = _shapes(to_ldm(build_components("sd15", model_configs("sd15")), Family.SD1))
    inpaint = dict(sd1)
    inpaint["model.diffusion_model.input_blocks.0.0.weight"] = (32, 9, 3, 3)
    assert detect_checkpoint_family(inpaint.keys(), inpaint) == (
        Family.SD1,
        "epsilon",
    )  # 9 channels: an inpainting model
    pix2pix = dict(sd1)
    pix2pix["model.diffusion_model.input_blocks.0.0.weight"] = (32, 8, 3, 3)
    with pytest.raises(ModelLoadError, match="instruct-pix2pix SD1"):
        detect_checkpoint_family(pix2pix.keys(), pix2pix)
    xl = _shapes(to_ldm(build_components("sdxl", model_configs("sdxl")), Family.SDXL))
    refiner = {k.replace("conditioner.embedders.1.", "conditioner.embedders.0."): v for k, v in xl.items()}
    refiner = {k: v for k, v in refiner.items() if not k.startswith("conditioner.embedders.0.transformer.")}
    with pytest.raises(ModelLoadError, match="refiner"):
        detect_checkpoint_family(refiner.keys(), refiner)
    lora = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 320)}
    with pytest.raises(ModelLoadError, match="LoRA"):
        detect_checkpoint_family(lora.keys(), lora)
    with pytest.raises(ModelLoadError, match="no Stable Diffusion U-Net"):
        detect_checkpoint_family(["foo.weight"], {"foo.weight": (3,)})
