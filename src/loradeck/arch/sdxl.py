"""SDXL (and Pony, Illustrious, NoobAI: same architecture): U-Net + CLIP-L + OpenCLIP-bigG, 1024 px.

NoobAI-XL V-Pred and other v-prediction / zero-terminal-SNR derivatives carry ``v_pred`` / ``ztsnr`` marker keys
(formats/ldm_family.py reads them)."""

from loradeck.arch.base import Arch, Component
from loradeck.families import Family

ARCH = Arch(
    family=Family.SDXL,
    components=(
        Component("unet", "unet", "unet", "lora_unet_"),
        Component("te1", "text_encoder", "clip", "lora_te1_"),
        Component("te2", "text_encoder_2", "openclip", "lora_te2_"),
        Component("vae", "vae", "vae"),
    ),
    native_size=1024,
    config_dir="sdxl",
    default_sampler="Euler a",
    default_schedule="Automatic",
    checkpoint_markers=("conditioner.embedders.1.",),
    lora_name_markers=(r"lora_te[12]_",),
    unet_names="sgm",
)
