"""Files that live beside a model and describe it, read and written the way A1111 and Civitai tools do.

Beside ``models/Lora/sub/name.safetensors``:

- ``name.json`` — A1111 user metadata (``description``, ``sd version``, ``activation text``, ``preferred weight``,
  ``negative text``, ``notes``); written with 4-space indent, UTF-8, unknown keys kept, atomically.
- ``name.civitai.info`` — the raw JSON of Civitai's model-version (``trainedWords``, ``baseModel``, ``model.name``…);
  ``{}`` means "looked up, not on Civitai".
- previews — ``name.{png,jpg,jpeg,webp,gif}`` then ``name.preview.{…}``, extension by extension, so ``name.png`` wins.
- descriptions — ``name.txt`` / ``name.description.txt`` (the ``.json`` description wins).

Every sidecar path is the model path minus its extension plus the sidecar suffix, so ``a.b.safetensors`` → ``a.b.json``.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loradeck.errors import FormatError
from loradeck.families import Family
from loradeck.formats import json_safe

# the `sd version` values A1111 knows (its SdVersion); other architectures (Flux) are written as Unknown there
A1111_VERSIONS = (Family.SD1, Family.SD2, Family.SDXL)
PREVIEW_EXTS = ("png", "jpg", "jpeg", "webp", "gif")
DESCRIPTION_SUFFIXES = (".txt", ".description.txt")
CIVITAI_SUFFIX = ".civitai.info"

# A1111 key names of name.json, in the order A1111 writes them.
USER_KEYS = ("description", "sd version", "activation text", "preferred weight", "negative text", "notes")
_TAG = re.compile(r"<[^<>:]+:[^<>]*>")  # a <lora:x:1> tag pasted into a trained word


def sidecar_base(model_path: str | os.PathLike) -> Path:
    """``dir/name`` for ``dir/name.safetensors``: the stem every sidecar name starts with."""
    p = Path(model_path)
    return p.with_name(p.stem) if p.suffix else p


def user_metadata_path(model_path: str | os.PathLike) -> Path:
    return _with_suffix(model_path, ".json")


def civitai_info_path(model_path: str | os.PathLike) -> Path:
    return _with_suffix(model_path, CIVITAI_SUFFIX)


def _with_suffix(model_path: str | os.PathLike, suffix: str) -> Path:
    base = sidecar_base(model_path)
    return base.with_name(base.name + suffix)


def _as_path(p: str | os.PathLike) -> Path:
    return p if isinstance(p, Path) else Path(p)  # Path(Path) re-parses: measurable over 1,000 scan entries


# ---------------------------------------------------------------- atomic writes


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temp file in the same folder, fsync, then rename over ``path``: readers never see half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a shared LoRA folder needs the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | os.PathLike, doc: Any) -> Path:
    """JSON the way A1111 writes sidecars: 4-space indent, non-ASCII kept, UTF-8."""
    return atomic_write_bytes(path, json.dumps(doc, indent=4, ensure_ascii=False).encode("utf-8"))


MAX_SIDECAR_BYTES = 16 * 1024 * 1024  # a .civitai.info with its image list is ~100 KB
MAX_DESCRIPTION_BYTES = 1024 * 1024


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_SIDECAR_BYTES + 1)
    except OSError as e:
        raise FormatError(path, f"cannot be read ({e.strerror or e})") from e
    if len(data) > MAX_SIDECAR_BYTES:
        raise FormatError(path, f"is larger than the {MAX_SIDECAR_BYTES // 2**20} MB a sidecar may be")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise FormatError(path, f"is not UTF-8 text (byte {e.start})") from None
    doc = json_safe.loads(text, path, "sidecar")  # bounded depth, no NaN/Infinity
    if not isinstance(doc, dict):
        raise FormatError(path, "is not a JSON object")
    return doc


# ---------------------------------------------------------------- name.json (A1111 user metadata)


@dataclass
class UserMetadata:
    """A1111's per-model user metadata. ``extra`` keeps keys other tools wrote, so a rewrite loses nothing."""

    description: str = ""
    sd_version: str = ""  # "SD1" | "SD2" | "SDXL" | "Unknown" | "" (unset)
    activation_text: str = ""
    preferred_weight: float = 0.0  # 0 = use the global default multiplier, as in A1111
    negative_text: str = ""
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> Family | None:
        """The family the user chose (overrides detection), or None when unset/Unknown."""
        fam = Family.from_label(self.sd_version)
        return None if fam is Family.UNKNOWN else fam

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> UserMetadata:
        return cls(
            description=_as_text(doc.get("description")),
            sd_version=_as_text(doc.get("sd version")),
            activation_text=_as_text(doc.get("activation text")),
            preferred_weight=_as_float(doc.get("preferred weight")),
            negative_text=_as_text(doc.get("negative text")),
            notes=_as_text(doc.get("notes")),
            extra={k: v for k, v in doc.items() if k not in USER_KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "description": self.description,
            "sd version": self.sd_version or "Unknown",
            "activation text": self.activation_text,
            "preferred weight": self.preferred_weight,
            "negative text": self.negative_text,
            "notes": self.notes,
        }
        doc.update({k: v for k, v in self.extra.items() if k not in USER_KEYS})
        return doc


def _as_text(v: Any) -> str:
    return "" if v is None else str(v)


def _as_float(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return f if math.isfinite(f) else 0.0  # "Infinity" in a sidecar must not reach a JSON response


def read_user_metadata(model_path: str | os.PathLike) -> UserMetadata | None:
    """``name.json`` beside ``model_path``; None when absent; FormatError when unreadable or not an object."""
    path = user_metadata_path(model_path)
    if not path.is_file():
        return None
    return UserMetadata.from_dict(_read_json_object(path))


def write_user_metadata(model_path: str | os.PathLike, meta: UserMetadata) -> Path:
    """Write ``name.json``; keys already in the file that ``meta`` does not know about are kept."""
    path = user_metadata_path(model_path)
    doc: dict[str, Any] = {}
    if path.is_file():
        try:
            doc = _read_json_object(path)
        except FormatError:
            doc = {}  # a broken file is replaced, not merged
    doc.update(meta.to_dict())
    return atomic_write_json(path, doc)


def update_user_metadata(model_path: str | os.PathLike, **changes: Any) -> Path:
    """Change some fields (``activation_text=…``, ``preferred_weight=…``) of ``name.json``, creating it if needed."""
    meta = read_user_metadata(model_path) or UserMetadata()
    for name, value in changes.items():
        if not hasattr(meta, name) or name == "extra":
            raise TypeError(f"unknown user-metadata field {name!r}")
        setattr(meta, name, value)
    return write_user_metadata(model_path, meta)


# ---------------------------------------------------------------- name.civitai.info


@dataclass(frozen=True)
class CivitaiInfo:
    """The parts of a Civitai model-version JSON the library shows; ``raw`` is the whole document."""

    raw: dict[str, Any]

    @property
    def found(self) -> bool:
        """False for the ``{}`` Civitai Helper writes after a 404."""
        return bool(self.raw)

    @property
    def trained_words(self) -> list[str]:
        words = self.raw.get("trainedWords") or []
        return [w for w in words if isinstance(w, str) and w.strip()] if isinstance(words, list) else []

    @property
    def base_model(self) -> str:
        return _as_text(self.raw.get("baseModel"))

    @property
    def model_name(self) -> str:
        model = self.raw.get("model")
        return _as_text(model.get("name")) if isinstance(model, dict) else ""

    @property
    def version_name(self) -> str:
        return _as_text(self.raw.get("name"))

    @property
    def model_id(self) -> int | None:
        return _as_int(self.raw.get("modelId"))

    @property
    def version_id(self) -> int | None:
        return _as_int(self.raw.get("id"))

    @property
    def description(self) -> str:
        return _as_text(self.raw.get("description"))

    @property
    def family(self) -> Family | None:
        fam = Family.from_label(self.base_model)
        return None if fam is Family.UNKNOWN else fam


def _as_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def read_civitai_info(model_path: str | os.PathLike) -> CivitaiInfo | None:
    """``name.civitai.info`` beside ``model_path``; None when absent; FormatError when not a JSON object."""
    path = civitai_info_path(model_path)
    if not path.is_file():
        return None
    return CivitaiInfo(_read_json_object(path))


def write_civitai_info(model_path: str | os.PathLike, version: Mapping[str, Any]) -> Path:
    """Write the raw model-version JSON (``GET /model-versions/{id}`` or ``/by-hash``) as ``name.civitai.info``."""
    return atomic_write_json(civitai_info_path(model_path), dict(version))


def user_metadata_from_civitai(
    version: Mapping[str, Any], *, preferred_weight: float = 0.0, keep: UserMetadata | None = None
) -> UserMetadata:
    """A1111 user metadata filled from a Civitai model-version, as the official extension does.

    ``activation text`` = trained words joined by ", " (``<lora:…>`` tags stripped), or by " || " when a word is itself
    a comma list (zixaphir's rule, so whole prompts stay apart); ``sd version`` from ``baseModel``. Fields the user
    already filled in ``keep`` win over Civitai's.
    """
    info = CivitaiInfo(dict(version))
    words = [w for w in (_TAG.sub("", w).strip(" ,") for w in info.trained_words) if w]
    sep = " || " if any("," in w for w in words) else ", "
    fam = info.family
    meta = keep if keep is not None else UserMetadata()
    return UserMetadata(
        description=meta.description or info.description,
        sd_version=meta.sd_version if meta.family else (fam.label if fam in A1111_VERSIONS else "Unknown"),
        activation_text=meta.activation_text or sep.join(words),
        preferred_weight=meta.preferred_weight or preferred_weight,
        negative_text=meta.negative_text,
        notes=meta.notes,
        extra=dict(meta.extra),
    )


# ---------------------------------------------------------------- previews and descriptions


def preview_candidates(model_path: str | os.PathLike) -> list[Path]:
    """Preview paths in A1111's order: per extension, ``name.ext`` before ``name.preview.ext``."""
    base = sidecar_base(model_path)
    out = []
    for ext in PREVIEW_EXTS:
        out.append(base.with_name(f"{base.name}.{ext}"))
        out.append(base.with_name(f"{base.name}.preview.{ext}"))
    return out


def find_preview(model_path: str | os.PathLike, siblings: Collection[str] | None = None) -> Path | None:
    """The first existing preview. ``siblings`` (file names in the folder) avoids one stat per candidate in scans."""
    if siblings is None:
        return next((c for c in preview_candidates(model_path) if c.is_file()), None)
    p = _as_path(model_path)
    stem = p.stem if p.suffix else p.name
    for ext in PREVIEW_EXTS:  # by name first: building Paths for misses costs more than the scan itself
        for name in (f"{stem}.{ext}", f"{stem}.preview.{ext}"):
            if name in siblings:
                return p.with_name(name)
    return None


def write_preview(model_path: str | os.PathLike, data: bytes, ext: str = "png") -> Path:
    """Save a downloaded preview as ``name.preview.<ext>`` (a user's own ``name.<ext>`` still wins on lookup)."""
    ext = ext.lower().lstrip(".")
    if ext not in PREVIEW_EXTS:
        raise ValueError(f"preview extension must be one of {', '.join(PREVIEW_EXTS)}, not {ext!r}")
    base = sidecar_base(model_path)
    return atomic_write_bytes(base.with_name(f"{base.name}.preview.{ext}"), data)


def read_description(model_path: str | os.PathLike, siblings: Collection[str] | None = None) -> str | None:
    """Text of ``name.txt`` or else ``name.description.txt``, or None."""
    base = sidecar_base(model_path)
    for suffix in DESCRIPTION_SUFFIXES:
        path = base.with_name(base.name + suffix)
        if (path.name in siblings) if siblings is not None else path.is_file():
            try:
                with path.open("rb") as f:  # capped: a description, not a multi-GB file named .txt
                    return f.read(MAX_DESCRIPTION_BYTES).decode("utf-8-sig", errors="replace").strip()
            except OSError:
                continue
    return None


# ---------------------------------------------------------------- all of them at once


@dataclass
class Sidecars:
    """Everything found beside one model; ``errors`` holds one sentence per sidecar that could not be read."""

    user: UserMetadata | None = None
    civitai: CivitaiInfo | None = None
    preview: Path | None = None
    description: str | None = None
    errors: list[str] = field(default_factory=list)


def read_sidecars(model_path: str | os.PathLike, siblings: Collection[str] | None = None) -> Sidecars:
    """Read every sidecar of ``model_path``; a broken one is reported in ``errors`` and skipped, never raised."""
    p = _as_path(model_path)
    out = Sidecars(preview=find_preview(p, siblings))
    stem = p.stem if p.suffix else p.name
    for attr, suffix, reader in (
        ("user", ".json", read_user_metadata),
        ("civitai", CIVITAI_SUFFIX, read_civitai_info),
    ):
        if siblings is not None and stem + suffix not in siblings:
            continue
        try:
            setattr(out, attr, reader(p))
        except FormatError as e:
            out.errors.append(str(e))
    text = None
    if siblings is None or any(stem + s in siblings for s in DESCRIPTION_SUFFIXES):
        text = read_description(model_path, siblings)
    json_desc = out.user.description if out.user else ""
    out.description = json_desc or text or (out.civitai.description if out.civitai else "") or None
    return out
