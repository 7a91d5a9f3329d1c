"""Flux.1 (dev, schnell and derivatives): MMDiT transformer + CLIP-L + T5-XXL + a 16-channel VAE, 1024 px,
flow matching with distilled guidance (dev) — LoRA names: lora/flux_keys.py; shapes: configs/flux."""

from loradeck.arch.base import Arch, Component
from loradeck.families import Family

ARCH = Arch(
    family=Family.FLUX,
    components=(
        Component("transformer", "transformer", "mmdit", "lora_unet_"),
        Component("te1", "text_encoder", "clip", "lora_te1_"),
        Component("te2", "text_encoder_2", "t5", "lora_te3_"),
        Component("vae", "vae", "vae"),
    ),
    native_size=1024,
    config_dir="flux",
    default_sampler="Euler",
    default_schedule="Simple",
    checkpoint_markers=("double_blocks.", "model.diffusion_model.double_blocks."),
    lora_name_markers=(
        r"lora_unet_(double_blocks|single_blocks|transformer_blocks|single_transformer_blocks)_\d",
        r"lora_transformer_",
        r"lora_te3_",
    ),
    unet_names="bfl",
    guidance="distilled",
    prediction="flow",
)
