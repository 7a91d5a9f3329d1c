"""A trained file is a kohya LoRA: canonical names, loads in diffusers with nothing left over, merges to the same
weights in diffusers and in loradeck, and carries kohya's metadata with a correct ``sshs_model_hash``."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from loradeck.families import Family
from loradeck.formats.hashes import tensor_sha256_file
from loradeck.lora import LoraPatcher, StackEntry, keymap_for_family, keymap_from_models, load_lora
from loradeck.train import train_lora

from .conftest import small_config

PARAMS = ("lora_down.weight", "lora_up.weight", "alpha")


@pytest.fixture(scope="module")
def trained(demo_base, tmp_path_factory):
    """One short run with text encoder and LoCon convs, kept for every test of this module."""
    from .conftest import draw_pictures

    tmp = tmp_path_factory.mktemp("compat")
    draw_pictures(tmp / "data" / "3_shapes", 4)
    torch.set_num_threads(1)
    cfg = small_config(tmp / "data", demo_base, tmp, conv_rank=2, conv_alpha=1, steps=3, alpha=2)
    result = train_lora(cfg)
    return result, cfg


def _tensors(path):
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def test_every_key_is_a_canonical_kohya_name(trained):
    result, cfg = trained
    tensors, _ = _tensors(result.lora_path)
    km = keymap_for_family(Family.DEMO)
    canonical = set(km.modules) | set(km.conv_modules)
    modules = {k.split(".", 1)[0] for k in tensors}
    assert modules <= canonical
    # the default set (attention/ff/proj + TE attention/MLP) complete, and every LoCon target too
    assert set(km.modules) <= modules
    assert set(km.conv_modules) <= modules
    assert len(modules) == result.modules
    for key, t in tensors.items():
        module, param = key.split(".", 1)
        assert param in PARAMS, key
        assert t.dtype == torch.float16  # save precision
        if param == "alpha":
            assert t.dim() == 0
    # rank / alpha per module: rank 4 alpha 2 for linear and 1x1, conv rank 2 alpha 1 for 3x3 convs
    down = tensors["lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"]
    assert down.shape[0] == 4
    assert float(tensors["lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.alpha"]) == 2.0
    conv = tensors["lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight"]
    assert conv.shape[0] == 2 and conv.shape[2:] == (3, 3)
    assert float(tensors["lora_unet_down_blocks_0_resnets_0_conv1.alpha"]) == 1.0


def test_metadata_hash_and_sidecar(trained):
    result, cfg = trained
    _, meta = _tensors(result.lora_path)
    assert meta["sshs_model_hash"] == tensor_sha256_file(result.lora_path)
    assert meta["ss_output_name"] == "testlora"
    assert meta["ss_network_module"] == "networks.lora"
    assert meta["ss_network_dim"] == "4" and meta["ss_network_alpha"] == "2.0"
    assert json.loads(meta["ss_network_args"]) == {"conv_dim": "2", "conv_alpha": "1"}
    assert meta["ss_base_model_version"] == "sd_v1" and meta["ss_v2"] == "False"
    assert meta["ss_resolution"] == "(32, 32)" and meta["modelspec.resolution"] == "32x32"
    assert meta["ss_num_train_images"] == "12"  # 4 pictures × 3 repeats
    assert json.loads(meta["ss_dataset_dirs"]) == {"3_shapes": {"n_repeats": 3, "img_count": 4}}
    assert meta["ss_steps"] == "3" and meta["ss_max_train_steps"] == "3"
    assert meta["ss_seed"] == "3" and meta["ss_learning_rate"] == "0.01"
    assert meta["ss_optimizer"].startswith("torch.optim.adamw.AdamW")
    freq = json.loads(meta["ss_tag_frequency"])["3_shapes"]
    assert freq["stripy"] == 4  # the trigger, prepended to each caption, counted once per picture
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert meta["modelspec.title"] == "testlora" and meta["modelspec.trigger_phrase"] == "stripy"
    sidecar = json.loads(result.lora_path.with_suffix(".json").read_text())
    assert sidecar["activation text"] == "stripy"
    assert (result.output_dir / "loss.png").is_file()
    assert load_lora(result.lora_path).family is Family.DEMO


def _diffusers_pipe(base):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(base, safety_checker=None, requires_safety_checker=False)


def test_loads_in_diffusers_with_no_leftover_and_merges_like_loradeck(trained, demo_base, monkeypatch):
    import diffusers.utils.peft_utils as peft_utils
    from peft.tuners.lora import LoraLayer

    result, _ = trained
    tensors, _ = _tensors(result.lora_path)
    warnings: list[str] = []
    monkeypatch.setattr(peft_utils.logger, "warning", lambda msg, *a, **k: warnings.append(str(msg)))
    pipe = _diffusers_pipe(demo_base)
    base_w = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    pipe.load_lora_weights(str(result.lora_path))  # raises if a key was not renamed
    assert not warnings
    layers = sum(isinstance(m, LoraLayer) for part in (pipe.unet, pipe.text_encoder) for m in part.modules())
    assert layers == len({k.split(".", 1)[0] for k in tensors})
    pipe.fuse_lora(lora_scale=1.0)
    pipe.unload_lora_weights()
    ref = {"unet": pipe.unet.state_dict(), "te1": pipe.text_encoder.state_dict()}

    ours = _diffusers_pipe(demo_base)
    comps = {"unet": ours.unet, "te1": ours.text_encoder}
    keymap = keymap_from_models(Family.DEMO, ours.unet, {"te1": ours.text_encoder})
    report = LoraPatcher(comps, keymap).apply([StackEntry(load_lora(result.lora_path))])
    assert report.files[0].modules_matched == result.modules and not report.warnings
    changed = 0
    for comp, sd in ref.items():
        mine = comps[comp].state_dict()
        for key, r in sd.items():
            tol = 1e-5 * float(r.abs().max()) + 1e-7
            assert float((mine[key] - r).abs().max()) <= tol, key
            if comp == "unet" and not torch.equal(base_w[key], r):
                changed += 1
    assert changed > 100  # the LoRA really moved the weights (3 steps at lr 1e-2)
