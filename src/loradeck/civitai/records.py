"""Typed views of Civitai API records (models, versions, files, images, search pages).

Each record keeps the JSON it came from in ``raw`` (the ``.civitai.info`` sidecar is the raw version JSON, and fields
we do not model must survive). Parsing is lenient: Civitai drops and renames fields often (docs/reference/civitai-api.md §3), so a
missing key becomes ``None``/empty instead of an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

LORA_TYPES = ("LORA", "LoCon", "DoRA")
CHECKPOINT_TYPES = ("Checkpoint",)
BLOCKED_LEVEL = 32  # nsfwLevel bitmask: 1 PG, 2 PG-13, 4 R, 8 X, 16 XXX, 32 Blocked
NSFW_FROM_LEVEL = 4  # tools treat R and above as NSFW


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 time as Civitai writes it (``2024-06-01T00:00:00.000Z``), or ``None``."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ModelFile:
    id: int
    name: str
    size_kb: float | None
    type: str  # Model, VAE, Training Data, ...
    primary: bool
    download_url: str | None
    hashes: dict[str, str]  # keys as Civitai spells them (SHA256, AutoV2, AutoV3, ...), values upper-case hex
    format: str | None  # SafeTensor, PickleTensor, ...
    fp: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelFile:
        meta = data.get("metadata") or {}
        hashes = {str(k): str(v).upper() for k, v in (data.get("hashes") or {}).items() if v}
        size = data.get("sizeKB")
        return cls(
            id=_int(data.get("id")) or 0,
            name=str(data.get("name") or ""),
            size_kb=float(size) if isinstance(size, int | float) else None,
            type=str(data.get("type") or "Model"),
            primary=bool(data.get("primary")),
            download_url=data.get("downloadUrl"),
            hashes=hashes,
            format=meta.get("format"),
            fp=meta.get("fp"),
            raw=data,
        )

    def hash(self, kind: str) -> str | None:
        """A hash by type name, case-insensitively (``sha256`` finds ``SHA256``)."""
        for key, value in self.hashes.items():
            if key.lower() == kind.lower():
                return value
        return None

    @property
    def sha256(self) -> str | None:
        value = self.hash("SHA256")
        return value if value and len(value) == 64 else None

    @property
    def size_bytes(self) -> int | None:
        """Civitai stores sizes in KiB as a float; bytes rounded (within 1 KiB of the truth at worst)."""
        return round(self.size_kb * 1024) if self.size_kb is not None else None


@dataclass(frozen=True)
class ModelImage:
    id: int | None
    url: str
    nsfw_level: int  # bitmask level, 0 when Civitai did not say
    width: int | None
    height: int | None
    type: str  # image | video
    meta: dict[str, Any] | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelImage:
        level = data.get("nsfwLevel")
        return cls(
            id=_int(data.get("id")),
            url=str(data.get("url") or ""),
            nsfw_level=level if isinstance(level, int) else 0,
            width=_int(data.get("width")),
            height=_int(data.get("height")),
            type=str(data.get("type") or "image"),
            meta=data.get("meta") if isinstance(data.get("meta"), dict) else None,
            raw=data,
        )

    def allowed(self, nsfw: bool) -> bool:
        """Whether a user with this NSFW setting may see it. Unrated (0) counts as NSFW when NSFW is off."""
        if self.nsfw_level >= BLOCKED_LEVEL:
            return False
        return nsfw or 0 < self.nsfw_level < NSFW_FROM_LEVEL


@dataclass(frozen=True)
class ModelVersion:
    id: int
    model_id: int | None
    name: str
    base_model: str | None
    trained_words: tuple[str, ...]
    description: str | None  # HTML, as Civitai stores it
    files: tuple[ModelFile, ...]
    images: tuple[ModelImage, ...]
    download_url: str | None
    early_access_ends: datetime | None
    model_name: str | None
    model_type: str | None  # LORA, LoCon, DoRA, Checkpoint, ...
    download_count: int | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any], parent: dict[str, Any] | None = None) -> ModelVersion:
        """``parent`` is the model item when the version came nested in ``/models`` (no ``model`` key then)."""
        model = data.get("model") or parent or {}
        words = data.get("trainedWords") or []
        return cls(
            id=_int(data.get("id")) or 0,
            model_id=_int(data.get("modelId")) or _int((parent or {}).get("id")),
            name=str(data.get("name") or ""),
            base_model=data.get("baseModel"),
            trained_words=tuple(str(w) for w in words if isinstance(w, str) and w.strip()),
            description=data.get("description"),
            files=tuple(ModelFile.from_json(f) for f in data.get("files") or [] if isinstance(f, dict)),
            images=tuple(ModelImage.from_json(i) for i in data.get("images") or [] if isinstance(i, dict)),
            download_url=data.get("downloadUrl"),
            early_access_ends=parse_time(data.get("earlyAccessEndsAt") or data.get("earlyAccessDeadline")),
            model_name=model.get("name"),
            model_type=model.get("type"),
            download_count=_int((data.get("stats") or {}).get("downloadCount")),
            raw=data,
        )

    @property
    def subject(self) -> str:
        """How errors name this version: ``model version 67890 (Pixel Style v1.0)``."""
        label = " ".join(p for p in (self.model_name, self.name) if p)
        return f"model version {self.id}" + (f" ({label})" if label else "")

    @property
    def primary_file(self) -> ModelFile | None:
        """The file Civitai marks primary, else the first ``Model`` file, else the first file."""
        for f in self.files:
            if f.primary:
                return f
        models = [f for f in self.files if f.type == "Model"]
        return (models or list(self.files) or [None])[0]

    def file(self, file_id: int | None = None) -> ModelFile | None:
        if file_id is None:
            return self.primary_file
        return next((f for f in self.files if f.id == file_id), None)

    def preview(self, nsfw: bool) -> ModelImage | None:
        """The first still image this NSFW setting allows (videos are skipped)."""
        return next((i for i in self.images if i.type == "image" and i.url and i.allowed(nsfw)), None)


@dataclass(frozen=True)
class CivitaiModel:
    id: int
    name: str
    type: str
    description: str | None
    nsfw: bool
    tags: tuple[str, ...]
    creator: str | None
    download_count: int | None
    versions: tuple[ModelVersion, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CivitaiModel:
        return cls(
            id=_int(data.get("id")) or 0,
            name=str(data.get("name") or ""),
            type=str(data.get("type") or ""),
            description=data.get("description"),
            nsfw=bool(data.get("nsfw")),
            tags=tuple(str(t) for t in data.get("tags") or [] if isinstance(t, str)),
            creator=(data.get("creator") or {}).get("username"),
            download_count=_int((data.get("stats") or {}).get("downloadCount")),
            versions=tuple(
                ModelVersion.from_json(v, parent=data) for v in data.get("modelVersions") or [] if isinstance(v, dict)
            ),
            raw=data,
        )

    @property
    def latest(self) -> ModelVersion | None:
        """Civitai lists versions newest first."""
        return self.versions[0] if self.versions else None


@dataclass(frozen=True)
class SearchPage:
    items: tuple[CivitaiModel, ...]
    next_cursor: str | None  # None = last page (Civitai gives no totals)
    next_page: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchPage:
        meta = data.get("metadata") or {}
        cursor = meta.get("nextCursor")
        return cls(
            items=tuple(CivitaiModel.from_json(m) for m in data.get("items") or [] if isinstance(m, dict)),
            next_cursor=str(cursor) if cursor not in (None, "") else None,
            next_page=meta.get("nextPage") or None,
        )
