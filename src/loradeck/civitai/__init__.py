"""Civitai: search, verified resumable downloads, sidecars, identifying local files by hash.

The CLI (``loradeck civitai …``) and the server call these; nothing here prints or reads settings by itself.
"""

from loradeck.civitai.api import CivitaiClient, Resolved
from loradeck.civitai.download import DownloadResult, download, download_file, install_folder
from loradeck.civitai.errors import CivitaiError, redact_url
from loradeck.civitai.identify import Identified, IdentifyReport, identify
from loradeck.civitai.records import (
    CHECKPOINT_TYPES,
    LORA_TYPES,
    CivitaiModel,
    ModelFile,
    ModelImage,
    ModelVersion,
    SearchPage,
)
from loradeck.civitai.refs import Reference, parse_reference

__all__ = [
    "CHECKPOINT_TYPES",
    "LORA_TYPES",
    "CivitaiClient",
    "CivitaiError",
    "CivitaiModel",
    "DownloadResult",
    "IdentifyReport",
    "Identified",
    "ModelFile",
    "ModelImage",
    "ModelVersion",
    "Reference",
    "Resolved",
    "SearchPage",
    "download",
    "download_file",
    "identify",
    "install_folder",
    "parse_reference",
    "redact_url",
]
