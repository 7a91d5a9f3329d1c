"""A reduced random Flux (diffusers folder, and the BFL transformer file + components) loads offline and draws
64×64 in 2 flow-matching Euler steps with distilled guidance; with a kohya Flux LoRA merged by loradeck the picture
is the one diffusers draws after its own load_lora_weights + fuse_lora on the same folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from loradeck.engine.flux import draw_flux, load_flux
from loradeck.lora.formats import parse_state_dict
from loradeck.lora.patcher import LoraPatcher, StackEntry
from tests.helpers.flux import BLOCKS_ONLY, kohya_flux_lora, to_bfl, write_tiny_flux_folder

ARGS = dict(width=64, height=64, steps=2, seed=7, distilled_cfg=3.5, max_sequence_length=32)
PROMPT = "a red circle"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_tiny_flux_folder(tmp_path_factory.mktemp("flux"))


def _lora(model):
    comps = {"transformer": model.transformer, "te1": model.text_encoder, "te2": model.text_encoder_2}
    # what diffusers 0.42 can load on a reduced model (its linear1 split is hard-coded to Flux.1-dev's sizes)
    return kohya_flux_lora(comps, which=lambda b: b.startswith(BLOCKS_ONLY) and not b.endswith("linear1"), clip=False)


def _pixels(img) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


def test_flux_folder_draws_with_a_lora_like_diffusers(folder, tmp_path):
    from diffusers import FluxPipeline

    model = load_flux(folder)
    plain = draw_flux(model, PROMPT, **ARGS)
    assert plain.size == (64, 64)
    sd = _lora(model)
    lora = parse_state_dict(tmp_path / "style.safetensors", sd, {})
    patcher = LoraPatcher(model.lora_components(), model.keymap())
    patcher.apply([StackEntry(lora, te=1.0, unet=0.9)])
    ours = draw_flux(model, PROMPT, **ARGS)
    patcher.restore()
    assert np.array_equal(_pixels(draw_flux(model, PROMPT, **ARGS)), _pixels(plain))  # restored bit-exactly

    pipe = FluxPipeline.from_pretrained(str(folder), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights({k: v.clone() for k, v in sd.items()})
    pipe.fuse_lora(lora_scale=0.9)
    args = {k: v for k, v in ARGS.items() if k not in ("seed", "distilled_cfg", "steps")}
    theirs = pipe(
        PROMPT, num_inference_steps=2, guidance_scale=3.5, generator=torch.Generator().manual_seed(7), **args
    ).images[0]
    diff = np.abs(_pixels(ours) - _pixels(theirs))
    assert diff.max() <= 1  # same merge within fp32 rounding, one 8-bit level at most
    assert np.abs(_pixels(ours) - _pixels(plain)).mean() > 1  # and the LoRA does change the picture


@pytest.mark.parametrize("storage", [torch.float32, torch.float8_e4m3fn])
def test_bfl_transformer_file_with_components(folder, tmp_path, storage):
    reference = load_flux(folder)
    path = tmp_path / "flux1-tiny.safetensors"
    save_file({k: v.to(storage).contiguous() for k, v in to_bfl(reference.transformer).items()}, str(path))
    model = load_flux(path, components=folder)
    assert model.layout == "single-file" and model.extra["unused_keys"] == []
    if storage is torch.float32:
        assert np.array_equal(_pixels(draw_flux(model, PROMPT, **ARGS)), _pixels(draw_flux(reference, PROMPT, **ARGS)))
    else:  # fp8 storage computes in fp32 (widened on load): the weights are the fp8 values
        w = reference.transformer.single_transformer_blocks[0].proj_mlp.weight
        got = model.transformer.single_transformer_blocks[0].proj_mlp.weight
        assert got.dtype is torch.float32 and torch.equal(got, w.to(storage).float())
        assert draw_flux(model, PROMPT, **ARGS).size == (64, 64)


def test_transformer_file_alone_needs_its_components(folder, tmp_path):
    from loradeck.errors import ModelLoadError

    path = tmp_path / "flux1-tiny.safetensors"
    save_file(to_bfl(load_flux(folder).transformer), str(path))
    with pytest.raises(ModelLoadError, match="only the Flux transformer"):
        load_flux(path)
    with pytest.raises(ModelLoadError, match="tokenizer_2"):
        import shutil

        bare = tmp_path / "parts"
        shutil.copytree(folder, bare)
        shutil.rmtree(bare / "tokenizer_2")
        load_flux(path, components=bare)
