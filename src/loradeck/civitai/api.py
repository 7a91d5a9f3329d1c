"""Civitai REST API: search with cursor pages, model/version records, lookups by hash, resolving references.

Usage::

    with CivitaiClient.from_settings(settings) as civitai:
        for page in civitai.search_pages("pixel", types=LORA_TYPES, base_models=["SDXL 1.0"]):
            ...
        target = civitai.resolve("https://civitai.com/models/123?modelVersionId=456")
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from loradeck.civitai.errors import NoSuchFile, NotFound
from loradeck.civitai.http import DEFAULT_BASE_URL, CivitaiHttp
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
    "DEFAULT_BASE_URL",
    "LORA_TYPES",
    "CivitaiClient",
    "CivitaiModel",
    "ModelFile",
    "ModelImage",
    "ModelVersion",
    "Reference",
    "Resolved",
    "SearchPage",
    "parse_reference",
]

SORTS = (
    "Highest Rated",
    "Most Downloaded",
    "Most Liked",
    "Most Discussed",
    "Most Collected",
    "Most Images",
    "Newest",
    "Oldest",
)
PERIODS = ("AllTime", "Year", "Month", "Week", "Day")
HASH_BATCH = 100  # POST /model-versions/by-hash takes at most 100 SHA256s
EMPTY_AUTOV3 = "E3B0C44298FC"  # sha256 of nothing: Civitai ignores it, so never look it up


@dataclass(frozen=True)
class Resolved:
    """A version and the file of it to download; ``model`` when we fetched the model record on the way."""

    version: ModelVersion
    file: ModelFile
    model: CivitaiModel | None = None


class CivitaiClient(CivitaiHttp):
    """The Civitai API client. Construct with ``CivitaiClient(base_url, token)`` or ``from_settings(settings)``."""

    def search(
        self,
        query: str | None = None,
        *,
        types: Sequence[str] = (),
        base_models: Sequence[str] = (),
        sort: str | None = None,
        period: str | None = None,
        nsfw: bool = False,
        limit: int = 20,
        cursor: str | None = None,
        tag: str | None = None,
        username: str | None = None,
    ) -> SearchPage:
        """One page of ``GET /api/v1/models``; pass ``page.next_cursor`` back as ``cursor`` for the next page.

        ``types`` and ``base_models`` are repeated parameters (``types=LORA&types=LoCon``); ``limit`` is clamped to
        1..100 (more is a 400 from Civitai)."""
        params: list[tuple[str, Any]] = [("limit", max(1, min(int(limit), 100))), ("nsfw", "true" if nsfw else "false")]
        if query:
            params.append(("query", query))
        params += [("types", t) for t in types]
        params += [("baseModels", b) for b in base_models]
        for name, value in (("sort", sort), ("period", period), ("tag", tag), ("username", username)):
            if value:
                params.append((name, value))
        if cursor:
            params.append(("cursor", cursor))
        subject = f"the search {query!r}" if query else "the model list"
        return SearchPage.from_json(self.get_json(self.api_url("models"), subject, params))

    def search_pages(
        self, query: str | None = None, *, max_pages: int | None = None, **filters: Any
    ) -> Iterator[SearchPage]:
        """Pages of a search, following ``nextCursor`` until Civitai stops giving one (or ``max_pages``)."""
        cursor = filters.pop("cursor", None)
        count = 0
        while max_pages is None or count < max_pages:
            page = self.search(query, cursor=cursor, **filters)
            yield page
            count += 1
            if not page.next_cursor or page.next_cursor == cursor:
                return
            cursor = page.next_cursor

    def model(self, model_id: int) -> CivitaiModel:
        return CivitaiModel.from_json(self.get_json(self.api_url(f"models/{int(model_id)}"), f"model {model_id}"))

    def version(self, version_id: int) -> ModelVersion:
        data = self.get_json(self.api_url(f"model-versions/{int(version_id)}"), f"model version {version_id}")
        return ModelVersion.from_json(data)

    def version_by_hash(self, file_hash: str) -> ModelVersion | None:
        """``GET /model-versions/by-hash/{hash}`` with any hash type Civitai stores (exact match); ``None`` if none."""
        value = file_hash.strip().upper()
        if not value or value.startswith(EMPTY_AUTOV3):
            return None
        try:
            data = self.get_json(self.api_url(f"model-versions/by-hash/{value}"), f"hash {value}")
        except NotFound:
            return None
        return ModelVersion.from_json(data)

    def versions_by_sha256(self, hashes: Iterable[str]) -> dict[str, ModelVersion]:
        """Batched ``POST /model-versions/by-hash`` (≤100 per call): ``{SHA256 (upper): version}`` for the matches.

        The reply does not say which hash matched which version, so matches are found through the versions' files."""
        wanted = sorted({h.strip().upper() for h in hashes if len(h.strip()) == 64})
        found: dict[str, ModelVersion] = {}
        for start in range(0, len(wanted), HASH_BATCH):
            batch = wanted[start : start + HASH_BATCH]
            data = self.post_json(self.api_url("model-versions/by-hash"), f"{len(batch)} hashes", batch)
            for item in data if isinstance(data, list) else []:
                if not isinstance(item, dict):
                    continue
                version = ModelVersion.from_json(item)
                for f in version.files:
                    if f.sha256 in batch and f.sha256 not in found:
                        found[f.sha256] = version
        return found

    def resolve(self, ref: str, *, version_id: int | None = None, file_id: int | None = None) -> Resolved:
        """``URL|MODEL_ID|VERSION_ID`` (see ``parse_reference``) → the full version record and the file to get.

        A model without a version picks its newest version; without ``file_id`` the primary file is taken. A bare
        number is tried as a model id first, then as a version id."""
        parsed = parse_reference(ref)
        version_id = version_id or parsed.version_id
        file_id = file_id if file_id is not None else parsed.file_id
        model: CivitaiModel | None = None
        if version_id is None and parsed.bare_id is not None:
            try:
                model = self.model(parsed.bare_id)
            except NotFound:
                try:
                    return self._pick(self.version(parsed.bare_id), file_id, None)
                except NotFound:
                    raise NotFound(f"model or model version with id {parsed.bare_id}") from None
        elif version_id is None and parsed.model_id is not None:
            model = self.model(parsed.model_id)
        if model is not None:
            latest = model.latest
            if latest is None:
                raise NoSuchFile(f"model {model.id} ({model.name})", None)
            version_id = latest.id
        return self._pick(self.version(version_id), file_id, model)

    @staticmethod
    def _pick(version: ModelVersion, file_id: int | None, model: CivitaiModel | None) -> Resolved:
        chosen = version.file(file_id)
        if chosen is None:
            raise NoSuchFile(version.subject, file_id)
        return Resolved(version=version, file=chosen, model=model)
