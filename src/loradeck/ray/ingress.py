"""The ingress deployment: every HTTP request of the A1111 API and ``/loradeck/v1`` comes here first, passes the same
HTTP Basic check and body limit as ``loradeck serve`` (the same middleware classes), and goes to a replica, which
answers through the single-server app (``replica.py``). The ingress runs no job and loads no model: it plans a
generation only to learn its checkpoint and LoRA stack (``Studio.plan`` on a studio that never runs anything), and
keeps the bookkeeping that spans replicas — the sticky stack map and in-flight counts (``policy.py``), which replica
holds which job, whose generation runs where (A1111's job-less progress), which replicas died.

Each route's treatment is listed in ``routes.py``. A replica that dies mid-request: a generation, a job submission or
a read is retried ONCE on another replica (a fixed seed gives the same picture; the answer's
``X-Loradeck-Retried-After`` names the dead replica); if that fails too, or no other replica is alive, the answer is
503 with one sentence. A job queued on a replica that died is reported failed ("lost") by the jobs routes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import Hashable
from dataclasses import dataclass, replace
from typing import Any

from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from loradeck.errors import ReplicaUnavailable
from loradeck.ray import routes
from loradeck.ray.messages import BROADCAST_HEADER, REPLICA_HEADER, RETRIED_HEADER, Answer, Forwarded, end_to_end
from loradeck.ray.policy import NoReplica, ReplicaView, StackAffinity
from loradeck.ray.router import replicas as router_replicas
from loradeck.ray.router import routed_to
from loradeck.settings import Settings

log = logging.getLogger("loradeck.ray")
REPLICA_DIED = (RayActorError, ActorUnavailableError)  # ActorDiedError is a RayActorError
ROUTING_HEADER = "x-loradeck-routing"  # "stack" or "ray", per request, when IngressConfig.routing_header is on
FINISHED = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class IngressConfig:
    deployment: str = "LoradeckReplica"  # the replica deployment's name (Ray's router for it is looked up by it)
    auth: dict[str, str] | None = None  # {user: password}: HTTP Basic on every route, as ``--api-auth``
    routing: str = "stack"  # "stack": loradeck's policy; "ray": Ray's power of two over the checkpoint's holders
    routing_header: bool = False  # let a request pick the routing (the benchmark compares both in one run)
    slack: int = 2  # the load bound of policy.StackAffinity
    poll_s: float = 2.0  # how often long jobs (training, downloads, tools) are checked for their end


@dataclass
class JobPlace:
    replica: str
    kind: str
    long: bool = False
    finished: bool = False


@serve.ingress()
class LoradeckIngress:
    """Ray Serve ingress (``deploy.build_app`` wraps it with ``serve.deployment``)."""

    def __init__(self, replicas: Any, settings: Settings, config: IngressConfig | None = None):
        self.handle = replicas  # DeploymentHandle of the replica deployment
        self.settings = settings
        self.config = config or IngressConfig()
        self.policy = StackAffinity(self.config.slack)
        self._planner: Any = None
        self._planner_lock = threading.Lock()
        self._checkpoint: str | None = None  # A1111's sd_model_checkpoint, as the replicas have it
        self._dead: set[str] = set()
        self._jobs: dict[str, JobPlace] = {}
        self._calls: dict[str, tuple[str, str | None]] = {}  # generations in flight: token → (caller, replica)
        self._latest: str | None = None  # the replica of the latest generation answered
        self._poller: asyncio.Task | None = None

    def __serve_build_asgi_app__(self) -> Any:
        from starlette.applications import Starlette
        from starlette.routing import Route

        from loradeck.server.auth import BasicAuthMiddleware
        from loradeck.server.body_limit import BodyLimitMiddleware

        methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        asgi: Any = Starlette(routes=[Route("/{path:path}", self.endpoint, methods=methods)])
        asgi = BodyLimitMiddleware(asgi, max_bytes=self.settings.limits.max_body_mb * 1_000_000)
        if self.config.auth:
            asgi = BasicAuthMiddleware(asgi, credentials=self.config.auth)  # outermost: checked first
        return asgi

    # ------------------------------------------------------------------------------------------------ HTTP
    async def endpoint(self, request: Request) -> Response:
        forwarded = Forwarded(
            request.method, request.url.path, request.url.query, end_to_end(request.headers.items()),
            await request.body(),
        )  # fmt: skip
        kind, job_id = routes.classify(request.method, request.url.path)
        routing = self.config.routing
        if self.config.routing_header and request.headers.get(ROUTING_HEADER) in ("stack", "ray"):
            routing = request.headers[ROUTING_HEADER]
        try:
            if kind == routes.JOBS:
                return JSONResponse(await self._all_jobs(forwarded))
            if kind == routes.CLUSTER:
                return JSONResponse(await self._cluster())
            if kind == routes.GENERATE:
                answer, retried = await self._generate(
                    forwarded, routes.caller_of(request.headers, request.client), routing
                )
            elif kind == routes.CALLER:
                caller = routes.caller_of(request.headers, request.client)
                answer, retried = await self._retrying(forwarded, self._caller_replica(caller))
            elif kind == routes.JOB:
                answer, retried = await self._job(forwarded, job_id or ""), None
            elif kind == routes.BROADCAST:
                answer, retried = await self._broadcast(forwarded), None
            elif kind == routes.WORK:
                answer, retried = await self._work(forwarded, routing)
            else:
                await self._views()  # none alive: 503 now rather than waiting for Ray to start one
                answer, retried = await self._retrying(forwarded, None)
        except ReplicaUnavailable as exc:
            return _error(503, exc, {"retry-after": "5"})
        except RayTaskError as exc:  # the replica's code raised outside the app (the app answers its own errors)
            log.error("replica error: %s", exc)
            return _error(500, exc.as_instanceof_cause() if hasattr(exc, "as_instanceof_cause") else exc)
        return _response(answer, retried)

    # ------------------------------------------------------------------------------------------------ sending
    async def _send(
        self, forwarded: Forwarded, *, replica: str | None = None, checkpoint: str | None = None,
        token: str | None = None, avoid: tuple[str, ...] = (),
    ) -> Answer:  # fmt: skip
        handle = self.handle.options(multiplexed_model_id=checkpoint) if checkpoint else self.handle
        answer: Answer = await handle.forward.remote(
            forwarded, route={"replica": replica, "token": token, "avoid": list(avoid)}
        )
        if replica and answer.replica != replica:  # Ray no longer had the named replica: it is gone
            self._mark_dead(replica)
        return answer

    async def _retrying(self, forwarded: Forwarded, replica: str | None) -> tuple[Answer, str | None]:
        """Send to ``replica`` (None: Ray's choice); if it dies, once more to any other live replica."""
        token = uuid.uuid4().hex
        try:
            return await self._send(forwarded, replica=replica, token=token), None
        except REPLICA_DIED:
            dead = replica or routed_to(token)
        finally:
            routed_to(token, forget=True)
        if dead:
            self._mark_dead(dead)
        try:
            return await self._send(forwarded, avoid=(dead,) if dead else ()), dead
        except REPLICA_DIED:
            raise ReplicaUnavailable(_died_twice(forwarded)) from None

    # ------------------------------------------------------------------------------------------------ generations
    async def _generate(self, forwarded: Forwarded, caller: str, routing: str) -> tuple[Answer, str | None]:
        key = await self._route_key(forwarded)
        token = uuid.uuid4().hex
        tried: list[str] = []
        try:
            for attempt in range(2):
                replica = None
                if routing == "stack" and key is not None:
                    replica = self.policy.choose(await self._views(), key[0], key[1], avoid=tried)
                self._calls[token] = (caller, replica)
                if replica:
                    self.policy.started(replica)
                try:
                    answer = await self._send(
                        forwarded, replica=replica, checkpoint=key[0] if key else None, token=token, avoid=tuple(tried)
                    )
                    self._latest = answer.replica
                    return answer, (tried[-1] if tried else None)
                except REPLICA_DIED:
                    dead = replica or routed_to(token)
                    if dead:
                        self._mark_dead(dead)
                        tried.append(dead)
                    if attempt == 1:
                        raise ReplicaUnavailable(_died_twice(forwarded)) from None
                    log.warning("replica %s died during %s; retrying once on another replica", dead, forwarded.path)
                finally:
                    if replica:
                        self.policy.finished(replica)
            raise AssertionError("unreachable")
        finally:
            self._calls.pop(token, None)
            routed_to(token, forget=True)

    async def _route_key(self, forwarded: Forwarded) -> tuple[str, Hashable] | None:
        """(checkpoint title, stack key) of a txt2img/img2img body, as the replica's studio will plan it; None when
        the body does not plan (the replica answers with the reason)."""
        try:
            data = json.loads(forwarded.body or b"{}")
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        overrides = data.get("override_settings")
        named = isinstance(overrides, dict) and overrides.get("sd_model_checkpoint")
        current = None if named else await self._current_checkpoint()
        return await asyncio.to_thread(self._plan_key, forwarded.path, data, current)

    def _plan_key(self, path: str, data: dict[str, Any], current: str | None) -> tuple[str, Hashable] | None:
        from loradeck.server.a1111_generate import to_generation_request
        from loradeck.server.models import Img2ImgRequest, Txt2ImgRequest

        img2img = path.rstrip("/").endswith("img2img")
        try:
            body = (Img2ImgRequest if img2img else Txt2ImgRequest).model_validate(data)
            request = to_generation_request(body, kind="img2img" if img2img else "txt2img")
            request.checkpoint = request.checkpoint or current
            plan = self.planner.plan(request)
        except Exception:  # noqa: BLE001 — routing only: the replica plans again and answers any error itself
            return None
        return plan.checkpoint.title, plan.stack_key

    @property
    def planner(self) -> Any:
        """A studio that only plans (it never queues a job or loads a model)."""
        with self._planner_lock:
            if self._planner is None:
                from loradeck.services.studio import Studio

                self._planner = Studio(self.settings)
            return self._planner

    async def _current_checkpoint(self) -> str | None:
        if self._checkpoint is None:
            try:
                answer, _ = await self._retrying(Forwarded("GET", "/sdapi/v1/options"), None)
                self._checkpoint = json.loads(answer.body).get("sd_model_checkpoint")
            except (ReplicaUnavailable, ValueError, AttributeError):
                return None
        return self._checkpoint

    def _caller_replica(self, caller: str) -> str | None:
        """The replica running the caller's latest generation, else anyone's latest, else the last one answered."""
        calls = list(self._calls.items())
        for token, (who, pinned) in reversed(calls):
            if who == caller and (replica := pinned or routed_to(token)):
                return None if replica in self._dead else replica
        for token, (_who, pinned) in reversed(calls):
            if replica := pinned or routed_to(token):
                return None if replica in self._dead else replica
        return None if self._latest in self._dead else self._latest

    # ------------------------------------------------------------------------------------------------ replicas
    async def _views(self) -> list[ReplicaView]:
        """The live replicas, in Ray's order; NoReplica (503) when none is."""
        views = router_replicas(self.config.deployment)
        if views is None:  # Ray creates its router here on the first call; that call waits for a replica to exist
            try:
                await asyncio.wait_for(self.handle.info.remote(route=None), timeout=120)
            except (TimeoutError, *REPLICA_DIED):
                pass
            views = router_replicas(self.config.deployment) or []
        live = [v for v in views if v.id not in self._dead]
        if not live:
            raise NoReplica("No loradeck replica is alive to run the request; Ray is restarting them, try again.")
        self.policy.forget(v.id for v in live)
        return live

    def _mark_dead(self, replica: str) -> None:
        if replica in self._dead:
            return
        log.warning("replica %s is gone", replica)
        self._dead.add(replica)
        for place in self._jobs.values():
            if place.replica == replica and not place.finished:
                place.finished = True  # lost with its replica: the jobs routes say so

    async def _broadcast(self, forwarded: Forwarded) -> Answer:
        """The same request on every live replica; the answer is the first error, else the first answer."""
        views = await self._views()
        results = await asyncio.gather(*(self._send(forwarded, replica=v.id) for v in views), return_exceptions=True)
        answers = []
        for view, result in zip(views, results):
            if isinstance(result, REPLICA_DIED):
                self._mark_dead(view.id)
            elif isinstance(result, BaseException):
                raise result
            else:
                answers.append(result)
        if not answers:
            raise ReplicaUnavailable(_died_twice(forwarded))
        if forwarded.path.endswith("/options"):
            self._checkpoint = None  # read again from a replica on the next generation
        chosen = next((a for a in answers if a.status >= 400), answers[0])
        every = (BROADCAST_HEADER, ",".join(sorted(a.replica for a in answers)))
        return replace(chosen, headers=(*chosen.headers, every))

    # ------------------------------------------------------------------------------------------------ jobs
    async def _work(self, forwarded: Forwarded, routing: str) -> tuple[Answer, str | None]:
        replica = self.policy.least_busy(await self._views()) if routing == "stack" else None
        if replica:
            self.policy.started(replica)
        try:
            answer, retried = await self._retrying(forwarded, replica)
        finally:
            if replica:
                self.policy.finished(replica)
        job_id = _json_field(answer, "job_id") if answer.status == 202 else None
        if job_id:
            kind = _work_kind(forwarded.path)
            place = JobPlace(answer.replica, kind, long=kind in routes.LONG_KINDS)
            self._jobs[job_id] = place
            if place.long:
                self.policy.started(place.replica)  # busy until the poller sees the job end
                if self._poller is None or self._poller.done():
                    self._poller = asyncio.get_running_loop().create_task(self._poll())
        return answer, retried

    async def _job(self, forwarded: Forwarded, job_id: str) -> Answer:
        place = self._jobs.get(job_id)
        if place is not None:
            if place.replica not in self._dead:
                try:
                    answer = await self._send(forwarded, replica=place.replica)
                    if answer.replica == place.replica:
                        return answer
                except REPLICA_DIED:
                    self._mark_dead(place.replica)
            body = json.dumps(routes.lost_job(job_id, place.replica, place.kind)).encode()
            return Answer(200, (("content-type", "application/json"),), body, place.replica)
        views = await self._views()  # a job the ingress did not see queued (a generation's): ask every replica
        results = await asyncio.gather(*(self._send(forwarded, replica=v.id) for v in views), return_exceptions=True)
        answers = [r for r in results if isinstance(r, Answer)]
        if not answers:
            raise ReplicaUnavailable(_died_twice(forwarded))
        found = next((a for a in answers if a.status != 404), None)
        if found is not None:
            self._jobs[job_id] = JobPlace(found.replica, _json_field(found, "kind") or "job")
        return found or answers[0]

    async def _all_jobs(self, forwarded: Forwarded) -> dict[str, Any]:
        views = await self._views()
        results = await asyncio.gather(*(self._send(forwarded, replica=v.id) for v in views), return_exceptions=True)
        answers: dict[str, dict[str, Any]] = {}
        for view, result in zip(views, results):
            if isinstance(result, REPLICA_DIED):
                self._mark_dead(view.id)
            elif isinstance(result, Answer) and result.status == 200:
                answers[result.replica] = json.loads(result.body)
        merged = routes.merge_jobs(answers)
        lost = [routes.lost_job(j, p.replica, p.kind) for j, p in self._jobs.items() if p.replica in self._dead]
        merged["jobs"] += lost
        return merged

    async def _cluster(self) -> dict[str, Any]:
        views = await self._views()
        results = await asyncio.gather(
            *(self.handle.info.remote(route={"replica": v.id}) for v in views), return_exceptions=True
        )
        infos = []
        for view, result in zip(views, results):
            if isinstance(result, REPLICA_DIED):
                self._mark_dead(view.id)
            elif isinstance(result, dict):
                infos.append({**result, "checkpoints": sorted(view.checkpoints)})
        sticky = self.policy.sticky()
        return {
            "replicas": infos,
            "dead": sorted(self._dead),
            "inflight": self.policy.inflight(),
            "sticky_stacks": {r: sum(1 for v in sticky.values() if v == r) for r in {*sticky.values()}},
            "routing": self.config.routing,
            "slack": self.policy.slack,
        }

    async def _poll(self) -> None:
        """Until no long job is left: see each one's end (its replica is no longer busy with it); a job that added
        files (training, download, tool) makes every replica refresh its library."""
        while any(p.long and not p.finished for p in self._jobs.values()):
            await asyncio.sleep(self.config.poll_s)
            try:
                await self._poll_once()
            except Exception:  # noqa: BLE001 — bookkeeping only: never let it end the loop (the next poll retries)
                log.exception("checking the long jobs failed")

    async def _poll_once(self) -> None:
        for job_id, place in [(j, p) for j, p in self._jobs.items() if p.long and not p.finished]:
            try:
                answer = await self._send(Forwarded("GET", f"/loradeck/v1/jobs/{job_id}"), replica=place.replica)
            except REPLICA_DIED:
                self._mark_dead(place.replica)
                continue
            state = _json_field(answer, "state") if answer.replica == place.replica else "failed"
            if state in FINISHED:
                place.finished = True
                self.policy.finished(place.replica)
                if state == "done" and place.kind in routes.LIBRARY_KINDS:
                    for path in ("/sdapi/v1/refresh-loras", "/sdapi/v1/refresh-checkpoints"):
                        try:
                            await self._broadcast(Forwarded("POST", path))
                        except ReplicaUnavailable:
                            pass


def _work_kind(path: str) -> str:
    if path.startswith("/loradeck/v1/tools/"):
        return "tool"
    return {
        "/loradeck/v1/train": "train",
        "/loradeck/v1/grid": "grid",
        "/loradeck/v1/civitai/download": "civitai-download",
    }.get(path, "extras")


def _json_field(answer: Answer, name: str) -> Any:
    try:
        data = json.loads(answer.body)
    except ValueError:
        return None
    return data.get(name) if isinstance(data, dict) else None


def _died_twice(forwarded: Forwarded) -> str:
    return (
        f"The replica running {forwarded.method} {forwarded.path} died and no other replica could take it; Ray is "
        "restarting it, try again."
    )


def _error(status: int, exc: BaseException, headers: dict[str, str] | None = None) -> JSONResponse:
    sentence = str(exc)
    body = {"error": type(exc).__name__, "detail": sentence, "errors": sentence}
    return JSONResponse(body, status_code=status, headers=headers)


def _response(answer: Answer, retried: str | None) -> Response:
    response = Response(content=answer.body, status_code=answer.status)
    response.raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
    response.raw_headers.append((REPLICA_HEADER.encode(), answer.replica.encode()))
    if retried:
        response.raw_headers.append((RETRIED_HEADER.encode(), retried.encode()))
    return response
