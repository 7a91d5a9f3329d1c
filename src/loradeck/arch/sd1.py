"""Stable Diffusion 1.x: U-Net + CLIP-L (768), 512 px, epsilon (v-prediction fine-tunes exist)."""

from loradeck.arch.base import Arch, Component
from loradeck.families import Family

ARCH = Arch(
    family=Family.SD1,
    components=(
        Component("unet", "unet", "unet", "lora_unet_"),
        Component("te1", "text_encoder", "clip", "lora_te_"),
        Component("vae", "vae", "vae"),
    ),
    native_size=512,
    config_dir="sd15",
    default_sampler="Euler a",
    default_schedule="Automatic",
    checkpoint_markers=("cond_stage_model.transformer.",),
)
