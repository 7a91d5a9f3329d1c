"""One replica: one ``Studio`` (one device, one loaded base model, its LoRA cache, its job queue) behind the same
FastAPI app as ``loradeck serve`` without Ray. The ingress hands it HTTP requests as they came in (``Forwarded``)
and gets the app's answer back; the app runs in this process through httpx's ASGI transport, so every route, check
and error sentence is the single-server one.

The checkpoint of a generation is Ray's multiplexed model id: ``checkpoint()`` is the ``@serve.multiplexed`` loader,
one model per replica (a studio holds one base model). It only records the id for Ray's routing table; the studio
loads the model itself, in its queue's order, when the job runs (so a model never loads in the middle of another
job).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import httpx
from ray import serve

from loradeck.ray.messages import Answer, Forwarded, end_to_end
from loradeck.settings import Settings


@dataclass(frozen=True)
class ReplicaConfig:
    fairness: int = 4  # the studio queue's bound (how many later jobs may overtake a waiting one)
    preload: bool = True  # load the current checkpoint while the replica starts
    cmd_flags: dict[str, Any] = field(default_factory=dict)  # what /sdapi/v1/cmd-flags reports (listen, port, auth)


class LoradeckReplica:
    """A Ray Serve deployment class (``deploy.build_app`` wraps it with ``serve.deployment``)."""

    async def __init__(self, settings: Settings, config: ReplicaConfig | None = None):
        from loradeck.server import create_app
        from loradeck.services.studio import Studio

        config = config or ReplicaConfig()
        self.studio = Studio(settings)
        self.app = create_app(self.studio, fairness=config.fairness, preload=config.preload)
        self.app.state.cmd_flags = dict(config.cmd_flags)
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://loradeck-replica", timeout=None
        )
        context = serve.get_replica_context()
        self.id = context.replica_id.unique_id
        import ray

        self.extra = {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}
        if config.preload:  # the app queued the current checkpoint's load: tell Ray's routing table now
            await self.checkpoint(self.studio.checkpoint)

    @serve.multiplexed(max_num_models_per_replica=1)
    async def checkpoint(self, title: str) -> str:
        return title  # the studio loads it when the job runs (see the module docstring)

    async def forward(self, request: Forwarded, route: dict[str, Any] | None = None) -> Answer:
        """Run ``request`` through this replica's app. ``route`` is read by the router only (which replica)."""
        model = serve.get_multiplexed_model_id()
        if model:
            await self.checkpoint(model)
        response = await self.client.request(
            request.method, request.target, headers=list(request.headers), content=request.body
        )
        return Answer(
            response.status_code, end_to_end(response.headers.multi_items()), response.content, self.id, self.extra
        )

    async def info(self, route: dict[str, Any] | None = None) -> dict[str, Any]:
        """Who this replica is and what its studio holds (tests, the bench, ``/loradeck/v1/cluster``)."""
        loaded = self.studio.loaded
        queue = self.studio.queue
        return {
            "replica": self.id,
            **self.extra,
            "checkpoint": self.studio.checkpoint,
            "loaded": loaded.title if loaded is not None else None,
            "running": queue.running.id if queue.running is not None else None,
            "pending": len(queue.pending()),
            "completed": queue.completed,
            "stack_switches": queue.switches,
        }

    def __del__(self) -> None:
        studio = getattr(self, "studio", None)
        if studio is not None:
            studio.close()  # a graceful shutdown: interrupt the running job, cancel the waiting ones
