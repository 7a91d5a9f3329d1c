"""Model families as modules: one declaration (``Arch``) per family, and the registry (``registry.ARCHS``)."""

from loradeck.arch.base import Arch, Component
from loradeck.arch.registry import ARCHS, arch_of, checkpoint_family, lora_family_by_names, native_size

__all__ = ["ARCHS", "Arch", "Component", "arch_of", "checkpoint_family", "lora_family_by_names", "native_size"]
