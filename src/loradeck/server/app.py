"""The FastAPI app: A1111's ``/sdapi/v1`` and our ``/loradeck/v1`` over one Studio, behind HTTP Basic when asked.

Hook for the web UI: the app never claims ``/``; mount the UI there (``loradeck.ui.mount_ui``) over the same studio,
so UI and API jobs share its queue. The auth middleware wraps the whole ASGI app, so a UI mounted later is protected
too.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from loradeck.errors import (
    Cancelled,
    CheckpointNotFound,
    FormatError,
    InvalidRequest,
    LoradeckError,
    LoraNotFound,
    ModelLoadError,
    UpstreamError,
)
from loradeck.server.auth import BasicAuthMiddleware
from loradeck.server.body_limit import BodyLimitMiddleware
from loradeck.server.service import DEMO, ServerState
from loradeck.services.studio import Studio
from loradeck.settings import Limits
from loradeck.version import __version__

log = logging.getLogger("loradeck.server")


def create_app(
    studio: Studio,
    *,
    auth: dict[str, str] | None = None,
    limits: Limits | None = None,
    affinity: bool | None = None,
    fairness: int | None = None,
    preload: bool = False,
) -> FastAPI:
    """The API app over ``studio``. ``auth`` = {user: password} turns on HTTP Basic for every route; ``limits``,
    ``affinity`` and ``fairness`` (how many later jobs may overtake a waiting one) change the studio's settings."""
    from loradeck.server import (
        a1111_extras,
        a1111_generate,
        a1111_info,
        a1111_lists,
        a1111_options,
        civitai_routes,
        grid_routes,
        loradeck_routes,
        tools_routes,
        train_routes,
    )

    if limits is not None:
        studio.settings = studio.settings.with_(limits=limits)
    if affinity is not None:
        studio.queue.affinity = affinity
    if fairness is not None:
        studio.queue.fairness = fairness
    state = ServerState(studio=studio)
    if preload:  # load the demo model while the server starts, so the first request does not wait for it
        studio.switch_checkpoint(DEMO)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        studio.close()

    from loradeck.library.confine import allowed_roots

    # Over the network a checkpoint path outside the models folder is opened only under allowed_paths (the routes
    # refuse other paths first; this keeps the library itself from indexing one that slipped through).
    studio.library.outside_roots = allowed_roots(studio.settings)
    app = FastAPI(title="loradeck", version=__version__, lifespan=lifespan)
    app.state.studio = studio
    app.state.loradeck = state
    a1111_options.restore(state)  # <home>/config.json: options set before a restart
    modules = (a1111_generate, a1111_info, a1111_options, a1111_lists, a1111_extras)
    for module in (*modules, loradeck_routes, civitai_routes, train_routes, grid_routes, tools_routes):
        app.include_router(module.router)
    _add_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=studio.settings.limits.max_body_mb * 1_000_000)
    if auth:
        app.add_middleware(BasicAuthMiddleware, credentials=auth)  # added last = outermost: checked first
    return app


def status_for(exc: LoradeckError) -> int:
    if isinstance(exc, CheckpointNotFound | LoraNotFound):
        return 404
    if isinstance(exc, InvalidRequest | FormatError):
        return 422
    if isinstance(exc, ModelLoadError):
        return 500
    if isinstance(exc, Cancelled):
        return 409
    if isinstance(exc, UpstreamError):  # Civitai's own 401/403 must not read as ours: the upstream failed
        if exc.status in (400, 422):  # it refused what the client asked for (a search field, a cursor)
            return 422
        return 404 if exc.status in (404, 410) else 502
    return 400


def error_body(exc: BaseException) -> dict[str, str]:
    sentence = str(exc) if isinstance(exc, LoradeckError) else f"{type(exc).__name__}: {exc}"
    return {"error": type(exc).__name__, "detail": sentence, "errors": sentence}


def validation_sentence(errors) -> str:
    """pydantic's errors as one sentence: where and what, for the first problem (the input is never echoed)."""
    if not errors:
        return "The request body is not valid."
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "The request body"
    message = str(first.get("msg", "is not valid"))
    if first.get("type") == "value_error":  # our own sentences (CheckedBody) say where already
        return message.removeprefix("Value error, ")
    more = f" ({len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{where}: {message}{more}."


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LoradeckError)
    async def loradeck_error(_request: Request, exc: LoradeckError) -> JSONResponse:
        return JSONResponse(error_body(exc), status_code=status_for(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_body(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer echoes the input, and an echoed NaN or Infinity cannot be written as JSON (a 500)
        sentence = validation_sentence(exc.errors())
        return JSONResponse({"error": "InvalidRequest", "detail": sentence, "errors": sentence}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(error_body(exc), status_code=500)
