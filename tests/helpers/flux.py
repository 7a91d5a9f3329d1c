"""A reduced random-weight Flux (diffusers' tiny test sizes: 2 double + 2 single blocks, D = 32, tiny CLIP-L and
T5 from loradeck/configs/flux_tiny) and the reference correspondence between BFL's fused weights and diffusers'
split modules (diffusers' single-file conversion), written out independently of loradeck's."""

from __future__ import annotations

import json
from importlib import resources

import torch
from diffusers import FluxTransformer2DModel
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

from loradeck.lora.flux_keys import keymap_from_flux_models


def _config(sub: str) -> dict:
    text = (resources.files("loradeck") / "configs" / "flux_tiny" / sub / "config.json").read_text()
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def build_tiny_flux(seed: int = 0):
    torch.manual_seed(seed)
    tr = FluxTransformer2DModel(**_config("transformer")).eval()
    te1 = CLIPTextModel(CLIPTextConfig(**_config("text_encoder"))).eval()
    te2 = T5EncoderModel(T5Config(**_config("text_encoder_2"))).eval()
    comps = {"transformer": tr, "te1": te1, "te2": te2}
    return comps, keymap_from_flux_models(tr, {"te1": te1, "te2": te2})


def bfl_table(tr) -> dict[str, list[tuple[str, int]] | str]:
    """BFL dotted path → diffusers path (one-to-one) or [(diffusers path, rows)] (fused, in row order)."""
    cfg = tr.config
    d = cfg.num_attention_heads * cfg.attention_head_dim
    table: dict[str, list[tuple[str, int]] | str] = {}
    for i in range(cfg.num_layers):
        b, t = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        table[b + "img_attn.qkv"] = [(t + f"attn.to_{x}", d) for x in "qkv"]
        table[b + "txt_attn.qkv"] = [(t + f"attn.add_{x}_proj", d) for x in "qkv"]
        table.update(
            {
                b + "img_attn.proj": t + "attn.to_out.0",
                b + "txt_attn.proj": t + "attn.to_add_out",
                b + "img_mlp.0": t + "ff.net.0.proj",
                b + "img_mlp.2": t + "ff.net.2",
                b + "txt_mlp.0": t + "ff_context.net.0.proj",
                b + "txt_mlp.2": t + "ff_context.net.2",
                b + "img_mod.lin": t + "norm1.linear",
                b + "txt_mod.lin": t + "norm1_context.linear",
            }
        )
    for i in range(cfg.num_single_layers):
        b, t = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        mlp = tr.single_transformer_blocks[i].proj_mlp.out_features
        table[b + "linear1"] = [(t + f"attn.to_{x}", d) for x in "qkv"] + [(t + "proj_mlp", mlp)]
        table[b + "linear2"] = t + "proj_out"
        table[b + "modulation.lin"] = t + "norm.linear"
    table.update(
        {
            "img_in": "x_embedder",
            "txt_in": "context_embedder",
            "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
            "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
            "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
            "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
            "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
            "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
            "final_layer.linear": "proj_out",
            "final_layer.adaLN_modulation.1": "norm_out.linear",  # rows swapped (see _expected)
        }
    )
    return table
