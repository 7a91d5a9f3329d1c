"""Our own routes under ``/loradeck/v1``: the library with trigger words, families, hashes and preview URLs; jobs."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse

from loradeck.library.confine import check_lora_name
from loradeck.server.service import ServerState
from loradeck.services.jobs import Job

router = APIRouter(prefix="/loradeck/v1", tags=["loradeck"])
PREVIEW_TYPES = {".png", ".jpg", ".jpeg", ".webp", ".gif"}


def state_of(request: Request) -> ServerState:
    return request.app.state.loradeck


def preview_url(qualified_name: str) -> str:
    return f"/loradeck/v1/loras/{quote(qualified_name)}/preview"


# ---------------------------------------------------------------------------------------------------- library
@router.get("/loras")
def library_loras(request: Request) -> list[dict[str, Any]]:
    """Every LoRA with trigger words, family, hashes, sidecar metadata and a preview URL (None without preview)."""
    out = []
    for entry in state_of(request).studio.loras():
        item = entry.to_dict()
        item["preview_url"] = preview_url(entry.qualified_name) if entry.preview else None
        out.append(item)
    return out


@router.get("/loras/{name:path}/preview")
def lora_preview(name: str, request: Request) -> FileResponse:
    """The preview picture of the LoRA named ``name`` (its ``subfolder/stem``). The name only selects a library
    entry; the file served is the entry's own preview, and only if it lies inside the LoRA folder."""
    state = state_of(request)
    check_lora_name(name)  # a path (../, /etc, %2e%2e) is refused by its spelling: 422, whatever exists
    entry = next((e for e in state.studio.library.loras() if e.qualified_name == name), None)
    if entry is None or entry.preview is None:
        raise HTTPException(404, f"No preview for a LoRA named {name!r}.")
    root = Path(state.studio.settings.lora_path).resolve()
    path = Path(entry.preview).resolve()
    if not path.is_relative_to(root) or path.suffix.lower() not in PREVIEW_TYPES or not path.is_file():
        raise HTTPException(404, f"No preview for a LoRA named {name!r}.")
    return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")


@router.get("/loras/{name:path}")
def library_lora(name: str, request: Request) -> dict[str, Any]:
    """One LoRA by prompt name (stem, alias or ``subfolder/name``), as the library resolves it."""
    entry = state_of(request).studio.library.resolve_lora(check_lora_name(name))
    item = entry.to_dict()
    item["preview_url"] = preview_url(entry.qualified_name) if entry.preview else None
    return item


@router.get("/embeddings")
def library_embeddings(request: Request) -> list[dict[str, Any]]:
    """Every textual-inversion embedding of the embeddings folders: family, vectors, width, hash, A1111's fields."""
    return [e.to_dict() for e in state_of(request).studio.embeddings()]


@router.get("/checkpoints")
def library_checkpoints(request: Request) -> list[dict[str, Any]]:
    return [c.to_dict() for c in state_of(request).studio.library.checkpoints()]


@router.get("/library/errors")
def library_errors(request: Request) -> list[dict[str, str]]:
    """Files the last scan could not read, one sentence each."""
    return [e.to_dict() for e in state_of(request).studio.library.errors()]


# ---------------------------------------------------------------------------------------------------- jobs
def _job_dict(state: ServerState, job: Job) -> dict[str, Any]:
    item = job.to_dict()
    queue = state.queue if state.queue.get(job.id) is job else state.downloads
    item["position"] = queue.position(job)
    return item


@router.get("/jobs")
def jobs(request: Request, state_filter: str | None = None) -> dict[str, Any]:
    """Queued, running and recent jobs of both queues, plus the device queue's affinity counters."""
    state = state_of(request)
    items = [_job_dict(state, j) for j in state.studio.jobs()]
    if state_filter:
        items = [i for i in items if i["state"] == state_filter]
    q = state.queue
    return {
        "jobs": sorted(items, key=lambda i: i["queued_at"]),
        "queue": {
            "affinity": q.affinity,
            "fairness": q.fairness,
            "pending": len(q.pending()),
            "running": q.running.id if q.running else None,
            "completed": q.completed,
            "stack_switches": q.switches,
        },
    }


def _find(state: ServerState, job_id: str) -> Job:
    job = state.studio.job(job_id)
    if job is None:
        raise HTTPException(404, f"No job with id {job_id!r}.")
    return job


@router.get("/jobs/{job_id}")
def job(job_id: str, request: Request) -> dict[str, Any]:
    state = state_of(request)
    return _job_dict(state, _find(state, job_id))


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: str, request: Request) -> dict[str, Any]:
    """A queued job is dropped (it never runs); a running one is interrupted."""
    state = state_of(request)
    job = _find(state, job_id)
    state.studio.cancel(job_id)
    return _job_dict(state, job)


@router.delete("/jobs/{job_id}")
def delete_job(job_id: str, request: Request) -> dict[str, Any]:
    return cancel_job(job_id, request)
