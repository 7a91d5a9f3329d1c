"""Core types an interface may name — a training config to fill, Civitai search records and filter values to show —
re-exported so that interfaces depend on the services layer only (the import contracts in pyproject.toml). None of
these modules loads torch."""

from __future__ import annotations

from loradeck.civitai.api import PERIODS, SORTS
from loradeck.civitai.records import LORA_TYPES, CivitaiModel
from loradeck.tools.requests import ConvertRequest, ExtractRequest, MergeRequest, ResizeRequest, ToolResult
from loradeck.train.config import TrainConfig

__all__ = [
    "LORA_TYPES",
    "PERIODS",
    "SORTS",
    "CivitaiModel",
    "ConvertRequest",
    "ExtractRequest",
    "MergeRequest",
    "ResizeRequest",
    "ToolResult",
    "TrainConfig",
]
