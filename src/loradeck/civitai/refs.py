"""Parse what a user pastes to name a Civitai model: page URLs, download URLs, API URLs, AIRs and bare ids."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from loradeck.civitai.errors import InvalidReference


@dataclass(frozen=True)
class Reference:
    model_id: int | None = None
    version_id: int | None = None
    file_id: int | None = None
    bare_id: int | None = None  # a plain number: a model id, or a version id when no model has it


_PATH_RULES = (
    (re.compile(r"/api/download/models/(\d+)"), "version"),
    (re.compile(r"/api/v1/model-versions/(\d+)"), "version"),
    (re.compile(r"/model-versions/(\d+)"), "version"),
    (re.compile(r"/api/v1/models/(\d+)"), "model"),
    (re.compile(r"/models/(\d+)"), "model"),
)
_AIR = re.compile(r"^(?:urn:air:[^:]+:[^:]+:civitai:)?(\d+)@(\d+)(?:\+(\d+))?(?:\.\w+)?$", re.IGNORECASE)
_PREFIXED = re.compile(r"^(model|version|model-version)[:=](\d+)$", re.IGNORECASE)


def _first_int(query: dict[str, list[str]], *names: str) -> int | None:
    for name in names:
        for value in query.get(name, []):
            if value.isdigit():
                return int(value)
    return None


def parse_reference(ref: str) -> Reference:
    """``URL|MODEL_ID|VERSION_ID`` → ids.

    Accepted: ``https://civitai.com/models/123[/slug][?modelVersionId=456]`` (also ``?version=``),
    ``…/api/download/models/456[?…&fileId=7]``, ``…/api/v1/model-versions/456``, ``…/api/v1/models/123``,
    ``urn:air:sdxl:lora:civitai:123@456``, ``123@456``, ``model:123``, ``version:456`` and a bare number (resolved
    later: model id first, then version id). Any host is accepted so that mirrors work.
    """
    text = (ref or "").strip()
    if text.isdigit():
        return Reference(bare_id=int(text))
    if m := _PREFIXED.match(text):
        kind, number = m.group(1).lower(), int(m.group(2))
        return Reference(model_id=number) if kind == "model" else Reference(version_id=number)
    if m := _AIR.match(text):
        return Reference(
            model_id=int(m.group(1)), version_id=int(m.group(2)), file_id=int(m.group(3)) if m.group(3) else None
        )
    parts = urlsplit(text if "://" in text else f"https://{text}")
    if not parts.hostname or "." not in parts.hostname and parts.hostname != "localhost":
        raise InvalidReference(ref)
    query = parse_qs(parts.query)
    for pattern, kind in _PATH_RULES:
        if m := pattern.search(parts.path):
            number = int(m.group(1))
            file_id = _first_int(query, "fileId")
            if kind == "version":
                return Reference(version_id=number, file_id=file_id)
            return Reference(
                model_id=number, version_id=_first_int(query, "modelVersionId", "version"), file_id=file_id
            )
    raise InvalidReference(ref)
