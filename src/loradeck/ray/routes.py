"""How the ingress treats each route of the API (pure functions; no Ray): where a request goes, and how the answers of
several replicas become one.

Every route of ``loradeck.server`` is served by a replica, through the same FastAPI app as without Ray; the ingress
only picks the replica (or all of them):

=============  =======================================================================================================
generate       txt2img, img2img: the replica for (checkpoint, LoRA stack) — ``policy.StackAffinity``; retried once
               on another replica if the chosen one dies mid-request
caller         A1111's progress, interrupt, skip: the replica running the caller's latest generation (or anyone's
               latest), since A1111's API has no job id there
job            ``/loradeck/v1/jobs/{id}`` (and cancel): the replica that queued the job
jobs           ``/loradeck/v1/jobs``: every replica's list, merged (each job says its replica)
broadcast      options, refresh-loras/-checkpoints/-embeddings/-vae, unload/reload-checkpoint: every replica
work           training, Civitai downloads, LoRA tools, grids, extras: the least busy replica (never the ingress)
cluster        ``/loradeck/v1/cluster`` (only with Ray): every replica's id, process, node, model and queue, and the
               ingress's sticky map and in-flight counts
any            everything else (lists, png-info, the docs): any replica, by Ray's own routing
=============  =======================================================================================================
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from typing import Any

GENERATE, CALLER, JOB, JOBS, BROADCAST, WORK, ANY = "generate", "caller", "job", "jobs", "broadcast", "work", "any"
CLUSTER = "cluster"

_EXACT = {
    ("POST", "/sdapi/v1/txt2img"): GENERATE,
    ("POST", "/sdapi/v1/img2img"): GENERATE,
    ("GET", "/sdapi/v1/progress"): CALLER,
    ("POST", "/sdapi/v1/interrupt"): CALLER,
    ("POST", "/sdapi/v1/skip"): CALLER,
    ("GET", "/loradeck/v1/jobs"): JOBS,
    ("GET", "/loradeck/v1/cluster"): CLUSTER,
    ("POST", "/sdapi/v1/options"): BROADCAST,
    ("POST", "/sdapi/v1/refresh-loras"): BROADCAST,
    ("POST", "/sdapi/v1/refresh-checkpoints"): BROADCAST,
    ("POST", "/sdapi/v1/refresh-embeddings"): BROADCAST,
    ("POST", "/sdapi/v1/refresh-vae"): BROADCAST,
    ("POST", "/sdapi/v1/unload-checkpoint"): BROADCAST,
    ("POST", "/sdapi/v1/reload-checkpoint"): BROADCAST,
    ("POST", "/loradeck/v1/train"): WORK,
    ("POST", "/loradeck/v1/grid"): WORK,
    ("POST", "/loradeck/v1/civitai/download"): WORK,
    ("POST", "/sdapi/v1/extra-single-image"): WORK,
    ("POST", "/sdapi/v1/extra-batch-images"): WORK,
}
_JOB = re.compile(r"^/loradeck/v1/jobs/([^/]+)(/cancel)?$")
LONG_KINDS = ("train", "civitai-download", "tool", "grid")  # jobs that keep a replica busy after their 202 answer
LIBRARY_KINDS = ("train", "civitai-download", "tool")  # jobs that add files: every replica refreshes when they end


def classify(method: str, path: str) -> tuple[str, str | None]:
    """(kind, job id or None) for a request."""
    method = method.upper()
    path = "/" + path.strip("/") if path not in ("", "/") else "/"
    kind = _EXACT.get((method, path))
    if kind is not None:
        return kind, None
    if method == "POST" and path.startswith("/loradeck/v1/tools/"):
        return WORK, None
    match = _JOB.match(path)
    if match and method in ("GET", "POST", "DELETE"):
        if match.group(2) and method != "POST":
            return ANY, None
        return JOB, match.group(1)
    return ANY, None


def caller_of(headers: Mapping[str, str], client: Sequence[Any] | None) -> str:
    """Who is asking, for A1111's job-less progress: the Basic-auth user (when auth is on) and the client's host."""
    user = ""
    auth = headers.get("authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            user = base64.b64decode(auth[6:].strip(), validate=True).partition(b":")[0].decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            user = ""
    return f"{user}@{client[0] if client else ''}"


def merge_jobs(answers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every replica's ``GET /loradeck/v1/jobs`` answer as one: the jobs of all (each with its ``replica``), the
    counters summed, and each replica's own queue under ``replicas``."""
    jobs: list[dict[str, Any]] = []
    queues: dict[str, dict[str, Any]] = {}
    for replica, answer in answers.items():
        for item in answer.get("jobs", []):
            jobs.append({**item, "replica": replica})
        queues[replica] = answer.get("queue", {})
    running = [q.get("running") for q in queues.values() if q.get("running")]
    first = next(iter(queues.values()), {})
    return {
        "jobs": sorted(jobs, key=lambda i: i.get("queued_at") or 0),
        "queue": {
            "affinity": first.get("affinity"),
            "fairness": first.get("fairness"),
            "pending": sum(q.get("pending", 0) for q in queues.values()),
            "running": running[0] if running else None,
            "running_all": running,
            "completed": sum(q.get("completed", 0) for q in queues.values()),
            "stack_switches": sum(q.get("stack_switches", 0) for q in queues.values()),
            "replicas": queues,
        },
    }


def lost_job(job_id: str, replica: str, kind: str | None) -> dict[str, Any]:
    """What ``GET /loradeck/v1/jobs/{id}`` answers for a job whose replica died: failed, saying why (never lost
    silently)."""
    error = (
        f"Job {job_id} was lost: the replica running it ({replica}) died; Ray restarts the replica, run the job again."
    )
    return {"id": job_id, "kind": kind or "job", "state": "failed", "error": error, "replica": replica, "lost": True}
