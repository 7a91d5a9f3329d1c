"""The FastAPI app: A1111's ``/sdapi/v1`` and our ``/loradeck/v1`` over one Studio, behind HTTP Basic when asked.

Hook for the web UI: the app never claims ``/``; mount the UI there (e.g. ``gradio.mount_gradio_app(app, ui, "/")``)
and reach the studio through ``app.state.studio`` and the queues through ``app.state.loradeck`` (a ServerState). The
auth middleware wraps the whole ASGI app, so a UI mounted later is protected too.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from loradeck import __version__
from loradeck.errors import Cancelled, FormatError, InvalidRequest, LoradeckError, LoraNotFound, ModelLoadError
from loradeck.server.auth import BasicAuthMiddleware
from loradeck.server.limits import BodyLimitMiddleware
from loradeck.server.queue import JobQueue
from loradeck.server.service import DEMO, CheckpointNotFound, ServerState
from loradeck.settings import Limits

log = logging.getLogger("loradeck.server")


def create_app(
    studio,
    *,
    auth: dict[str, str] | None = None,
    limits: Limits | None = None,
    affinity: bool = True,
    fairness: int = 4,
    preload: bool = False,
) -> FastAPI:
    """The API app over ``studio``. ``auth`` = {user: password} turns on HTTP Basic for every route; ``limits``
    defaults to ``studio.settings.limits``; ``fairness`` = how many later jobs may overtake a waiting one."""
    from loradeck.server import a1111_generate, a1111_info, civitai_routes, loradeck_routes, tools_routes, train_routes

    limits = limits or studio.settings.limits
    state = ServerState(
        studio=studio,
        limits=limits,
        queue=JobQueue(affinity=affinity, fairness=fairness, name="device").start(),
        downloads=JobQueue(affinity=False, fairness=0, name="downloads").start(),
    )
    if preload:  # load the demo model while the server starts, so the first request does not wait for it
        state.queue.submit(lambda job: studio.load_checkpoint(None), kind="load", label=f"load {DEMO}")

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        state.queue.stop()
        state.downloads.stop()

    app = FastAPI(title="loradeck", version=__version__, lifespan=lifespan)
    app.state.studio = studio
    app.state.loradeck = state
    for module in (a1111_generate, a1111_info, loradeck_routes, civitai_routes, train_routes, tools_routes):
        app.include_router(module.router)
    _add_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_mb * 1_000_000)
    if auth:
        app.add_middleware(BasicAuthMiddleware, credentials=auth)  # added last = outermost: checked first
    return app


def status_for(exc: LoradeckError) -> int:
    from loradeck.civitai.errors import CivitaiError, InvalidReference

    if isinstance(exc, CheckpointNotFound | LoraNotFound):
        return 404
    if isinstance(exc, InvalidRequest | FormatError | InvalidReference):
        return 422
    if isinstance(exc, ModelLoadError):
        return 500
    if isinstance(exc, Cancelled):
        return 409
    if isinstance(exc, CivitaiError):  # Civitai's own 401/403 must not read as ours: the upstream failed
        return 404 if exc.status in (404, 410) else 502
    return 400


def error_body(exc: BaseException) -> dict[str, str]:
    sentence = str(exc) if isinstance(exc, LoradeckError) else f"{type(exc).__name__}: {exc}"
    return {"error": type(exc).__name__, "detail": sentence, "errors": sentence}


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LoradeckError)
    async def loradeck_error(_request: Request, exc: LoradeckError) -> JSONResponse:
        return JSONResponse(error_body(exc), status_code=status_for(exc))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(error_body(exc), status_code=500)
