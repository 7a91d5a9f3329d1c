"""SDXL training path: two text encoders, pooled + time-id conditioning, SGM-style canonical names."""

from __future__ import annotations

import json
from importlib import resources

import torch
from safetensors import safe_open

from loradeck.families import Family
from loradeck.lora.keymap import build_keymap
from loradeck.train import TrainConfig, train_lora


def _tiny_sdxl(folder):
    """A random-weight SDXL-structured diffusers folder, 32 px pixel space, the demo tokenizer for both encoders."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from loradeck.demo.build import identity_vae, scheduler_config
    from loradeck.demo.paths import demo_model_dir

    cfg = json.loads((resources.files("loradeck") / "configs" / "sdxl" / "unet" / "config.json").read_text())
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    cfg.update(
        block_out_channels=[32, 64, 64], cross_attention_dim=96, attention_head_dim=[2, 4, 4], norm_num_groups=8,
        transformer_layers_per_block=[1, 2, 2], addition_time_embed_dim=8, projection_class_embeddings_input_dim=80,
        sample_size=32, in_channels=3, out_channels=3, layers_per_block=1,
    )  # fmt: skip
    torch.manual_seed(0)
    tok = CLIPTokenizer.from_pretrained(demo_model_dir(), subfolder="tokenizer")
    bos, eos = tok.convert_tokens_to_ids(["<|startoftext|>", "<|endoftext|>"])
    common = dict(vocab_size=len(tok), num_attention_heads=4, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos)
    te1 = CLIPTextModel(CLIPTextConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, **common))
    te2 = CLIPTextModelWithProjection(
        CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, projection_dim=32, **common)
    )
    pipe = StableDiffusionXLPipeline(
        vae=identity_vae(), text_encoder=te1, text_encoder_2=te2, tokenizer=tok, tokenizer_2=tok,
        unet=UNet2DConditionModel(**cfg), scheduler=EulerDiscreteScheduler(**scheduler_config()),
    )  # fmt: skip
    pipe.save_pretrained(folder)
    return cfg


def test_sdxl_lora_has_te1_te2_and_sgm_names(shapes_data, tmp_path):
    cfg = _tiny_sdxl(tmp_path / "xl")
    result = train_lora(
        TrainConfig(
            data=shapes_data,
            base=str(tmp_path / "xl"),
            name="xl",
            trigger="stripy",
            rank=4,
            alpha=4,
            steps=2,
            batch_size=2,
            lr=1e-2,
            device="cpu",
            output_dir=tmp_path / "run",
            lora_dir=tmp_path / "loras",
        )  # fmt: skip
    )
    assert all(torch.isfinite(torch.tensor(result.losses)))
    with safe_open(str(result.lora_path), "pt") as f:
        modules = {k.split(".", 1)[0] for k in f.keys()}
        meta = f.metadata()
    keymap = build_keymap(Family.SDXL, cfg, {"te1": {"num_hidden_layers": 2}, "te2": {"num_hidden_layers": 3}},
                          {"te1": False, "te2": True})  # fmt: skip
    assert modules == set(keymap.modules)  # every default target, each with its canonical (SGM) name
    assert sum(m.startswith("lora_te2_") for m in modules) == 3 * 6
    assert "lora_unet_input_blocks_3_1_transformer_blocks_1_attn2_to_k" in modules  # 1 layer per block
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0"
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
