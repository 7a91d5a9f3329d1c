"""LoRA engine: formats, kohya key maps, ΔW math and the patcher (pure: tensors, paths and nn.Modules in)."""

from loradeck.lora.formats import load_lora, parse_state_dict
from loradeck.lora.inspect import LoraSummary, describe_header, inspect_lora
from loradeck.lora.keymap import KeyMap, ModuleRef, build_keymap, keymap_for_family, keymap_from_models
from loradeck.lora.patcher import LoraPatcher, StackEntry
from loradeck.lora.report import FileReport, StackReport
from loradeck.lora.spec import LoraFile, ModuleSpec

__all__ = [
    "FileReport",
    "KeyMap",
    "LoraFile",
    "LoraPatcher",
    "LoraSummary",
    "ModuleRef",
    "ModuleSpec",
    "StackEntry",
    "StackReport",
    "build_keymap",
    "describe_header",
    "inspect_lora",
    "keymap_for_family",
    "keymap_from_models",
    "load_lora",
    "parse_state_dict",
]
