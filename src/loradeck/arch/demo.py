"""The embedded demo model: SD architecture and names at tiny sizes, pixel space (loradeck/demo)."""

from loradeck.arch.base import Arch, Component
from loradeck.families import Family

ARCH = Arch(
    family=Family.DEMO,
    components=(Component("unet", "unet", "unet", "lora_unet_"), Component("te1", "text_encoder", "clip", "lora_te_")),
    native_size=32,  # = demo.paths.demo_native_size() (tests/test_arch.py checks it)
    config_dir=None,  # its configs live with the model in loradeck/demo/model
    default_sampler="Euler a",
    default_schedule="Automatic",
)
