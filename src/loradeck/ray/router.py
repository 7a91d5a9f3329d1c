"""Ray Serve's request router for the replica deployment: it sends a request to the replica the ingress named.

The choice itself is the ingress's (``policy.StackAffinity``: checkpoint, then LoRA stack, within a load bound); a
call carries it as ``route={"replica": id}``. A call without one — and one whose replica is gone — gets Ray's default
routing (power of two choices over the replicas holding the multiplexed model id, i.e. the checkpoint), so Ray's
behaviour is the fallback and the baseline the benchmark compares against.

Ray's default router hands a free replica to the oldest waiting request with the same model id (FIFO); a named
replica must go to the request that named it, so each routing task fulfils its own request here. The router lives in
the ingress's process; ``replicas(deployment)`` tells the ingress which replicas Ray knows and which checkpoints
they hold.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from typing import Any

from ray.serve._private.request_router.pow_2_router import PowerOfTwoChoicesRequestRouter
from ray.serve._private.request_router.request_router import RequestRouter

from loradeck.ray.policy import ReplicaView

_ROUTERS: dict[str, Any] = {}  # deployment name → its router in this process (the ingress's)
_ROUTED: dict[str, str] = {}  # a call's token → the replica Ray sent it to (for calls the ingress did not pin)
_LOCK = threading.Lock()


class PinnedRouter(PowerOfTwoChoicesRequestRouter):
    """Power of two choices (Ray's default), except for requests that name their replica."""

    def initialize_state(self, **kwargs: Any) -> None:
        # Ray may ship this class by value, with a copy of this module's globals: register in the real module.
        module = importlib.import_module("loradeck.ray.router")
        with module._LOCK:
            module._ROUTERS[self._deployment_id.name] = self

    async def choose_replicas(self, candidate_replicas, pending_request=None):
        route = (pending_request.kwargs or {}).get("route") if pending_request is not None else None
        wanted = route.get("replica") if isinstance(route, dict) else None
        if wanted:
            for replica in candidate_replicas:
                if replica.replica_id.unique_id == wanted:
                    pending_request.routing_context.should_backoff = True  # full: wait for it, do not spin
                    return [[replica]]
            # the named replica is gone (died since the ingress chose): Ray's choice; the answer says where it ran
        ranks = await super().choose_replicas(candidate_replicas, pending_request)
        avoid = set(route.get("avoid") or ()) if isinstance(route, dict) else set()
        if avoid:  # a retry: never the replica that just died (Ray may not have dropped it yet)
            ranks = [[r for r in rank if r.replica_id.unique_id not in avoid] for rank in ranks]
            ranks = [rank for rank in ranks if rank]
            if not ranks and pending_request is not None:
                pending_request.routing_context.should_backoff = True
        return ranks

    def on_request_routed(self, pending_request, replica_id, result) -> None:
        route = (pending_request.kwargs or {}).get("route")
        token = route.get("token") if isinstance(route, dict) else None
        if token:
            module = importlib.import_module("loradeck.ray.router")
            with module._LOCK:
                module._ROUTED[token] = replica_id.unique_id

    def _fulfill_next_pending_request(self, replica, request_metadata=None) -> None:
        """Give ``replica`` to the request this routing task chose it for. Ray's default hands it to the oldest
        waiting request with the same model id (FIFOMixin), or to the one with the same internal request id — which
        every call the ingress makes while serving one HTTP request shares (a broadcast's calls, for instance)."""
        task = asyncio.current_task()
        by_future = self._routing_task_by_pending_request_future
        mine = next(
            (p for p in self._pending_requests_to_fulfill if not p.future.done() and by_future.get(p.future) is task),
            None,
        )
        if mine is None:
            RequestRouter._fulfill_next_pending_request(self, replica, request_metadata)
            return
        self._record_queue_wait_time(mine)
        mine.future.set_result(replica)
        if self._pending_requests_by_id.get(mine.metadata.internal_request_id) is mine:
            del self._pending_requests_by_id[mine.metadata.internal_request_id]


def replicas(deployment: str) -> list[ReplicaView] | None:
    """The replicas Ray's router for ``deployment`` knows now, in its order (None before the first call made it)."""
    with _LOCK:
        router = _ROUTERS.get(deployment)
    if router is None:
        return None
    for _ in range(5):  # the router's own loop may change its table while we copy it
        try:
            items = list(router.curr_replicas.values())
            break
        except RuntimeError:
            continue
    else:
        items = []
    return [ReplicaView(r.replica_id.unique_id, frozenset(r.multiplexed_model_ids)) for r in items]


def routed_to(token: str, *, forget: bool = False) -> str | None:
    """The replica Ray sent the call carrying ``token`` to (None until it is routed)."""
    with _LOCK:
        return _ROUTED.pop(token, None) if forget else _ROUTED.get(token)
