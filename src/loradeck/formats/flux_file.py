"""Flux.1 transformer files as distributed (``flux1-dev.safetensors``: Black Forest Labs' names, bf16 or fp8-e4m3
storage; ComfyUI's all-in-one files carry the same under ``model.diffusion_model.``) → diffusers'
``FluxTransformer2DModel`` state dict and config. Pure: tensors in, tensors out.

The key plan is written out (the same correspondence ``lora/flux_keys.py`` uses for LoRA names): fused ``qkv``
and ``linear1`` weights and biases are split at the model's own sizes, read from the file (D from ``img_in``, the MLP
width from ``linear2``), never Flux.1-dev's numbers; ``final_layer.adaLN_modulation.1`` has its (shift, scale)
halves swapped into diffusers' (scale, shift). fp8 tensors are widened on load (fp8 has no arithmetic on the CPU;
the model computes in the dtype asked for, bf16 or fp32).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from loradeck.errors import ModelLoadError

PREFIXES = ("model.diffusion_model.", "diffusion_model.")
FP8 = tuple(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n))

_DOUBLE = (
    ("img_attn.proj", "attn.to_out.0"),
    ("txt_attn.proj", "attn.to_add_out"),
    ("img_mlp.0", "ff.net.0.proj"),
    ("img_mlp.2", "ff.net.2"),
    ("txt_mlp.0", "ff_context.net.0.proj"),
    ("txt_mlp.2", "ff_context.net.2"),
    ("img_mod.lin", "norm1.linear"),
    ("txt_mod.lin", "norm1_context.linear"),
    ("img_attn.norm.query_norm.scale", "attn.norm_q.weight"),
    ("img_attn.norm.key_norm.scale", "attn.norm_k.weight"),
    ("txt_attn.norm.query_norm.scale", "attn.norm_added_q.weight"),
    ("txt_attn.norm.key_norm.scale", "attn.norm_added_k.weight"),
)
_SINGLE = (
    ("linear2", "proj_out"),
    ("modulation.lin", "norm.linear"),
    ("norm.query_norm.scale", "attn.norm_q.weight"),
    ("norm.key_norm.scale", "attn.norm_k.weight"),
)
_GLOBAL = (
    ("img_in", "x_embedder"),
    ("txt_in", "context_embedder"),
    ("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1"),
    ("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2"),
    ("vector_in.in_layer", "time_text_embed.text_embedder.linear_1"),
    ("vector_in.out_layer", "time_text_embed.text_embedder.linear_2"),
    ("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1"),
    ("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2"),
    ("final_layer.linear", "proj_out"),
)
# rotary dims per head width: Flux.1's (16, 56, 56) for 128, diffusers' tiny test sizes for 16
ROPE_AXES = {128: [16, 56, 56], 16: [4, 4, 8]}


def is_bfl_flux(keys: Iterable[str]) -> bool:
    return any(k.removeprefix("model.").removeprefix("diffusion_model.").startswith("double_blocks.") for k in keys)


def strip_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The transformer's tensors without ComfyUI's ``model.diffusion_model.`` (other components' keys dropped)."""
    prefixed = [p for p in PREFIXES if any(k.startswith(p) for k in state)]
    if not prefixed:
        return dict(state)
    p = prefixed[0]
    return {k[len(p) :]: v for k, v in state.items() if k.startswith(p)}


def _count(keys: Iterable[str], prefix: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return max(found) + 1 if found else 0


def infer_config(shapes: Mapping[str, tuple[int, ...]]) -> dict:
    """A ``FluxTransformer2DModel`` config from the BFL tensors' shapes (prefix already stripped)."""
    try:
        dim, in_channels = shapes["img_in.weight"]
        head_dim = shapes["double_blocks.0.img_attn.norm.query_norm.scale"][0]
        config: dict[str, Any] = {
            "patch_size": 1,
            "in_channels": in_channels,
            "num_layers": _count(shapes, "double_blocks."),
            "num_single_layers": _count(shapes, "single_blocks."),
            "attention_head_dim": head_dim,
            "num_attention_heads": dim // head_dim,
            "joint_attention_dim": shapes["txt_in.weight"][1],
            "pooled_projection_dim": shapes["vector_in.in_layer.weight"][1],
            "guidance_embeds": "guidance_in.in_layer.weight" in shapes,
        }
    except KeyError as missing:
        raise ModelLoadError(f"the Flux transformer has no {missing} tensor") from None
    if head_dim not in ROPE_AXES:
        raise ModelLoadError(f"no known rotary layout for Flux attention heads {head_dim} wide (Flux.1: 128)")
    config["axes_dims_rope"] = ROPE_AXES[head_dim]
    config["out_channels"] = shapes["final_layer.linear.weight"][0]
    return config


def _wide(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t.to(torch.float32).to(dtype) if t.dtype in FP8 else t.to(dtype)


def _swap(t: torch.Tensor) -> torch.Tensor:
    half = t.shape[0] // 2
    return torch.cat([t[half:], t[:half]], 0)


def bfl_to_diffusers(
    state: Mapping[str, torch.Tensor], dtype: torch.dtype = torch.float32
) -> tuple[dict[str, torch.Tensor], dict, list[str]]:
    """(diffusers state dict, config, BFL keys left unused) of a BFL-named Flux transformer."""
    bfl = strip_prefix(state)
    config = infer_config({k: tuple(v.shape) for k, v in bfl.items()})
    dim = config["num_attention_heads"] * config["attention_head_dim"]
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(src: str, dst: str, fn=None) -> None:
        for leaf in ("weight", "bias", ""):
            key = f"{src}.{leaf}" if leaf else src
            if key in bfl and key not in used:
                used.add(key)
                t = _wide(bfl[key], dtype)
                out[f"{dst}.{leaf}" if leaf and not dst.endswith(".weight") else dst] = fn(t) if fn else t

    def split(src: str, dsts: list[str], sizes: list[int]) -> None:
        for leaf in ("weight", "bias"):
            key = f"{src}.{leaf}"
            if key not in bfl:
                continue
            used.add(key)
            t = _wide(bfl[key], dtype)
            if t.shape[0] != sum(sizes):
                raise ModelLoadError(f"{key} has {t.shape[0]} rows where the model's sizes say {sum(sizes)}")
            for dst, part in zip(dsts, torch.split(t, sizes, 0), strict=True):
                out[f"{dst}.{leaf}"] = part.contiguous()

    for i in range(config["num_layers"]):
        b, d = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        split(b + "img_attn.qkv", [d + f"attn.to_{x}" for x in "qkv"], [dim] * 3)
        split(b + "txt_attn.qkv", [d + f"attn.add_{x}_proj" for x in "qkv"], [dim] * 3)
        for src, dst in _DOUBLE:
            take(b + src, d + dst)
    for i in range(config["num_single_layers"]):
        b, d = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        mlp = bfl[b + "linear2.weight"].shape[1] - dim  # linear2 takes [attention, MLP]: the MLP width, from the file
        split(b + "linear1", [d + f"attn.to_{x}" for x in "qkv"] + [d + "proj_mlp"], [dim, dim, dim, mlp])
        for src, dst in _SINGLE:
            take(b + src, d + dst)
    for src, dst in _GLOBAL:
        take(src, dst)
    take("final_layer.adaLN_modulation.1", "norm_out.linear", _swap)
    return out, config, sorted(set(bfl) - used)
