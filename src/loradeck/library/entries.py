"""What the library knows about one LoRA or checkpoint, as typed dataclasses with a JSON-ready ``to_dict``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loradeck.families import Family
from loradeck.formats.sidecars import CivitaiInfo, UserMetadata


@dataclass(frozen=True)
class Hashes:
    """Lower-case hex. ``tensor_sha256`` = full AutoV3 (addnet) hash; None for pickles or when not computed yet."""

    sha256: str | None = None
    autov1: str | None = None
    tensor_sha256: str | None = None

    @property
    def autov2(self) -> str | None:
        return self.sha256[:10] if self.sha256 else None

    @property
    def autov3(self) -> str | None:
        return self.tensor_sha256[:12] if self.tensor_sha256 else None

    def to_dict(self) -> dict[str, str | None]:
        return {
            "sha256": self.sha256,
            "autov1": self.autov1,
            "autov2": self.autov2,
            "autov3": self.autov3,
            "tensor_sha256": self.tensor_sha256,
        }

    def matches(self, short: str) -> bool:
        """Whether a hash as found in an infotext or on Civitai (8, 10, 12 or 64 hex) names this file."""
        h = short.lower()
        if len(h) < 8:
            return False
        return bool(
            (self.sha256 and self.sha256.startswith(h))
            or (self.tensor_sha256 and self.tensor_sha256.startswith(h))
            or (self.autov1 and self.autov1 == h)
        )


def base_model_label(civitai: CivitaiInfo | None, family: Family) -> str | None:
    """The base model a file was made for, as people name it: Civitai's ``baseModel`` (Pony, Illustrious, NoobAI,
    SDXL 1.0, SD 1.5, Flux.1 D, …) from the ``.civitai.info`` sidecar, else the family's label; None if unknown."""
    if civitai is not None and civitai.found and civitai.base_model:
        return civitai.base_model
    return None if family is Family.UNKNOWN else family.label


@dataclass
class LoraEntry:
    name: str  # file stem, as A1111
    alias: str  # ss_output_name, else the stem
    path: Path
    subfolder: str  # posix path of the folder relative to the LoRA dir, "" at top level
    size: int
    mtime: float
    family: Family
    format: str
    rank: int | None
    alpha: float | None
    module_count: int
    hashes: Hashes
    metadata: dict[str, Any]  # ss_*, sshs_*, modelspec.* … (values starting "{" JSON-decoded)
    user: UserMetadata | None = None
    civitai: CivitaiInfo | None = None
    preview: Path | None = None
    description: str | None = None
    trigger_words: list[str] = field(default_factory=list)
    trigger_source: str | None = None
    alias_forbidden: bool = False  # alias duplicated elsewhere: A1111 then resolves this name by stem only
    warnings: list[str] = field(default_factory=list)

    @property
    def qualified_name(self) -> str:
        """``subfolder/name``: unique even when stems repeat across subfolders."""
        return f"{self.subfolder}/{self.name}" if self.subfolder else self.name

    @property
    def prompt_name(self) -> str:
        """What a card click inserts in ``<lora:…>``: the alias, or the stem when the alias is forbidden."""
        return self.name if self.alias_forbidden else self.alias

    @property
    def preferred_weight(self) -> float:
        """The user's ``preferred weight``; 0 means "use the default multiplier" (A1111)."""
        return self.user.preferred_weight if self.user else 0.0

    @property
    def negative_text(self) -> str:
        return self.user.negative_text if self.user else ""

    @property
    def base_model(self) -> str | None:
        return base_model_label(self.civitai, self.family)

    @property
    def lora_hash(self) -> str | None:
        """The 12 hex for ``Lora hashes:`` (A1111): AutoV3 for safetensors, else the full-file sha256."""
        return self.hashes.autov3 or (self.hashes.sha256[:12] if self.hashes.sha256 else None)

    def to_dict(self) -> dict[str, Any]:
        civ = self.civitai
        return {
            "name": self.name,
            "alias": self.alias,
            "prompt_name": self.prompt_name,
            "qualified_name": self.qualified_name,
            "path": str(self.path),
            "subfolder": self.subfolder,
            "size": self.size,
            "mtime": self.mtime,
            "family": self.family.value,
            "base_model": self.base_model,
            "format": self.format,
            "rank": self.rank,
            "alpha": self.alpha,
            "module_count": self.module_count,
            "hashes": self.hashes.to_dict(),
            "lora_hash": self.lora_hash,
            "trigger_words": list(self.trigger_words),
            "trigger_source": self.trigger_source,
            "preferred_weight": self.preferred_weight,
            "negative_text": self.negative_text,
            "activation_text": self.user.activation_text if self.user else "",
            "description": self.description,
            "notes": self.user.notes if self.user else "",
            "sd_version": self.user.sd_version if self.user else "",
            "preview": str(self.preview) if self.preview else None,
            "civitai": None
            if civ is None or not civ.found
            else {
                "model_id": civ.model_id,
                "version_id": civ.version_id,
                "model_name": civ.model_name,
                "version_name": civ.version_name,
                "base_model": civ.base_model,
                "trained_words": civ.trained_words,
            },
            "metadata": self.metadata,
            "alias_forbidden": self.alias_forbidden,
            "warnings": list(self.warnings),
        }


@dataclass
class CheckpointEntry:
    """A base model: a single file or a diffusers folder. ``sha256`` is None until computed (see Library)."""

    name: str  # relative path with extension, posix: "sub/file.safetensors" (A1111 CheckpointInfo.name)
    model_name: str  # A1111: relative path without extension, "/" → "_"
    stem: str  # file stem: what infotext writes as ``Model:``
    path: Path
    subfolder: str
    size: int
    mtime: float
    family: Family
    format: str  # "safetensors" | "ckpt" | "diffusers"
    hashes: Hashes
    metadata: dict[str, Any] = field(default_factory=dict)
    user: UserMetadata | None = None
    preview: Path | None = None
    civitai: CivitaiInfo | None = None

    @property
    def base_model(self) -> str | None:
        return base_model_label(self.civitai, self.family)

    @property
    def autov2(self) -> str | None:
        return self.hashes.autov2

    @property
    def sha256(self) -> str | None:
        return self.hashes.sha256

    @property
    def title(self) -> str:
        """``sub/file.safetensors [autov2]`` as in A1111's ``sd-models``; no brackets until the hash is known."""
        return f"{self.name} [{self.autov2}]" if self.autov2 else self.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "name": self.name,
            "model_name": self.model_name,
            "stem": self.stem,
            "path": str(self.path),
            "subfolder": self.subfolder,
            "size": self.size,
            "mtime": self.mtime,
            "family": self.family.value,
            "base_model": self.base_model,
            "format": self.format,
            "hash": self.autov2,
            "sha256": self.sha256,
            "hashes": self.hashes.to_dict(),
            "preview": str(self.preview) if self.preview else None,
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class ScanError:
    """A file the scan could not read; ``message`` is one sentence naming the file and the reason."""

    path: Path
    kind: str  # "lora" | "checkpoint"
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"path": str(self.path), "kind": self.kind, "message": self.message}
