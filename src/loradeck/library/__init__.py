"""The LoRA and checkpoint library: scanning, the sqlite index, name resolution, trigger words."""

from loradeck.library.entries import CheckpointEntry, Hashes, LoraEntry, ScanError
from loradeck.library.library import Library, ScanReport
from loradeck.library.triggers import add_trigger_words, missing_trigger_words, trigger_warning

__all__ = [
    "CheckpointEntry",
    "Hashes",
    "Library",
    "LoraEntry",
    "ScanError",
    "ScanReport",
    "add_trigger_words",
    "missing_trigger_words",
    "trigger_warning",
]
