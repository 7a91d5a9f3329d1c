"""HTTP Basic on every route (A1111 leaves /loras and /refresh-loras open; we do not), compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hmac
import json

from loradeck.errors import InvalidRequest


def parse_credentials(spec: str) -> dict[str, str]:
    """``"user:pass,user2:pass2"`` → {user: pass}; a password may contain ``:`` (split on the first one)."""
    creds: dict[str, str] = {}
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise InvalidRequest(f"--api-auth expects user:password pairs separated by commas; {user!r} has none.")
        creds[user] = password
    if not creds:
        raise InvalidRequest("--api-auth is empty; give user:password pairs separated by commas.")
    return creds


class BasicAuthMiddleware:
    """ASGI middleware: a request without valid credentials gets 401 with ``WWW-Authenticate: Basic``.

    Wraps the whole app, so routes added later (the web UI mounted at ``/``, static files, docs) are covered too.
    """

    def __init__(self, app, credentials: dict[str, str], realm: str = "loradeck"):
        self.app = app
        self._creds = [(u.encode(), p.encode()) for u, p in credentials.items()]
        self._challenge = f'Basic realm="{realm}"'.encode()

    def allowed(self, header: bytes | None) -> bool:
        if not header or not header[:6].lower() == b"basic ":
            return False
        try:
            user, sep, password = base64.b64decode(header[6:].strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        if not sep:
            return False
        ok = False
        for u, p in self._creds:  # every pair is compared, so timing says nothing about which one matched
            ok |= hmac.compare_digest(user, u) & hmac.compare_digest(password, p)
        return ok

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        if self.allowed(dict(scope.get("headers") or []).get(b"authorization")):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"detail": "Not authenticated"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"www-authenticate", self._challenge),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
