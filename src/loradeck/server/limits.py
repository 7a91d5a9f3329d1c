"""Request limits (``Settings.limits``): checked at the door, before a job is queued, so a client gets 422 at once."""

from __future__ import annotations

import json

from loradeck.errors import InvalidRequest
from loradeck.vocab import GenerationRequest
from loradeck.settings import Limits

MAX_BATCH_COUNT = 100  # A1111's UI maximum for "Batch count" (n_iter)


def check_generation(request: GenerationRequest, limits: Limits) -> None:
    """Raise InvalidRequest (one sentence) when the request is over a limit or impossible."""
    for label, text in (("prompt", request.prompt), ("negative prompt", request.negative_prompt)):
        if len(text) > limits.max_prompt_chars:
            raise InvalidRequest(f"The {label} has {len(text)} characters; the limit is {limits.max_prompt_chars}.")
    for side_name, side in (("width", request.width), ("height", request.height)):
        if side is not None and not (8 <= side <= limits.max_side and side % 8 == 0):
            raise InvalidRequest(
                f"The {side_name} {side} is not possible: each side must be a multiple of 8 between 8 and "
                f"{limits.max_side}."
            )
    if not 1 <= request.steps <= limits.max_steps:
        raise InvalidRequest(f"Steps must be between 1 and {limits.max_steps}, not {request.steps}.")
    if not 1 <= request.batch_size <= limits.max_batch:
        raise InvalidRequest(f"The batch size must be between 1 and {limits.max_batch}, not {request.batch_size}.")
    if not 1 <= request.batch_count <= MAX_BATCH_COUNT:
        raise InvalidRequest(f"n_iter must be between 1 and {MAX_BATCH_COUNT}, not {request.batch_count}.")
    if request.init_image is not None and not 0.0 < request.denoising_strength <= 1.0:
        raise InvalidRequest(f"Denoising strength must be in (0, 1], not {request.denoising_strength}.")
    hr = request.hires
    if hr is not None and request.width and request.height:
        from loradeck.engine.hires import target_size

        w, h = target_size(request.width, request.height, hr.scale, hr.resize_x, hr.resize_y)
        if min(w, h) < 8 or max(w, h) > limits.max_side:
            raise InvalidRequest(f"Hires fix size {w}x{h} is not possible: each side must be 8 to {limits.max_side}.")


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 422 before the app reads them (chunked bodies are counted)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_bytes
            except ValueError:
                too_big = False
            if too_big:
                return await self._refuse(send)
            return await self.app(scope, receive, send)
        if headers.get(b"transfer-encoding", b"").lower() != b"chunked":
            return await self.app(scope, receive, send)
        chunks, size = [], 0
        while True:  # chunked upload: buffer up to the limit, then hand the body on
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message]), send)
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return await self._refuse(send)
            chunks.append(message)
            if not message.get("more_body"):
                break
        return await self.app(scope, _replay(chunks), send)

    async def _refuse(self, send):
        mb = self.max_bytes / 1_000_000
        sentence = f"The request body is larger than the limit of {mb:g} MB."
        body = json.dumps({"error": "InvalidRequest", "detail": sentence, "errors": sentence}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 422,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _replay(messages):
    queue = list(messages)

    async def receive():
        if queue:
            return queue.pop(0)
        return {"type": "http.disconnect"}

    return receive
