"""Request bodies over ``Limits.max_body_mb`` are refused at the door (422), before the app reads them."""

from __future__ import annotations

import json


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
