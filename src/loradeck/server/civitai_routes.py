"""``/loradeck/v1/civitai``: search, and downloads as jobs with byte progress; the library rescans after each."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from loradeck.server.models import CivitaiDownloadRequest
from loradeck.server.service import ServerState

router = APIRouter(prefix="/loradeck/v1/civitai", tags=["civitai"])


def state_of(request: Request) -> ServerState:
    return request.app.state.loradeck


def _client(state: ServerState):
    return state.studio.civitai()


def _version(v, nsfw: bool) -> dict[str, Any]:
    return {
        "id": v.id,
        "name": v.name,
        "base_model": v.base_model,
        "trained_words": list(v.trained_words),
        "download_count": v.download_count,
        "early_access_ends": v.early_access_ends.isoformat() if v.early_access_ends else None,
        "files": [
            {"id": f.id, "name": f.name, "size_kb": f.size_kb, "primary": f.primary, "type": f.type, "sha256": f.sha256}
            for f in v.files
        ],
        "images": [
            {"url": i.url, "nsfw_level": i.nsfw_level, "width": i.width, "height": i.height}
            for i in v.images
            if i.type == "image" and i.allowed(nsfw)
        ],
    }


@router.get("/search")
def search(
    request: Request,
    query: str | None = None,
    types: Annotated[list[str] | None, Query()] = None,
    base_models: Annotated[list[str] | None, Query()] = None,
    sort: str | None = None,
    period: str | None = None,
    nsfw: bool = False,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,  # Civitai's own maximum page size
    cursor: str | None = None,
) -> dict[str, Any]:
    """One page of Civitai's model search; pass ``next_cursor`` back as ``cursor`` for the next one."""
    with _client(state_of(request)) as client:
        page = client.search(
            query,
            types=types or (),
            base_models=base_models or (),
            sort=sort,
            period=period,
            nsfw=nsfw,
            limit=limit,
            cursor=cursor,
        )
    return {
        "items": [
            {
                "id": m.id,
                "name": m.name,
                "type": m.type,
                "nsfw": m.nsfw,
                "creator": m.creator,
                "tags": list(m.tags),
                "download_count": m.download_count,
                "versions": [_version(v, nsfw) for v in m.versions],
            }
            for m in page.items
        ],
        "next_cursor": page.next_cursor,
    }


@router.post("/download", status_code=202)
def download(body: CivitaiDownloadRequest, request: Request) -> dict[str, Any]:
    """Queue a verified download into the LoRA or checkpoint folder; poll ``/loradeck/v1/jobs/{id}``."""
    job = state_of(request).studio.submit_download(
        body.ref,
        version_id=body.version_id,
        file_id=body.file_id,
        nsfw=body.nsfw,
        overwrite=body.overwrite,
        describe=_describe,
    )
    return {"job_id": job.id, "status_url": f"/loradeck/v1/jobs/{job.id}"}


def _describe(result: Any) -> dict[str, Any]:
    """What the jobs route shows of a finished download: where the file went."""
    return {
        "path": str(result.path),
        "sha256": result.sha256,
        "size": result.size,
        "verified": result.verified,
        "already_present": result.already_present,
        "sidecars": [str(p) for p in result.sidecars],
        "warnings": list(result.warnings),
    }
