"""Stable Diffusion 2.x: U-Net + OpenCLIP-H (1024); 512 px epsilon (base) or 768 px v-prediction."""

from loradeck.arch.base import Arch, Component
from loradeck.families import Family

ARCH = Arch(
    family=Family.SD2,
    components=(
        Component("unet", "unet", "unet", "lora_unet_"),
        Component("te1", "text_encoder", "openclip", "lora_te_"),
        Component("vae", "vae", "vae"),
    ),
    native_size=512,  # 768 for the v-prediction models: read from the loaded model
    config_dir="sd2",
    default_sampler="Euler a",
    default_schedule="Automatic",
    checkpoint_markers=("cond_stage_model.model.",),
    prediction="v",  # the default of a single file without cues (see formats/ldm_family.py)
)
