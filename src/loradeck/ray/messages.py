"""What the ingress and a replica pass each other: an HTTP request as it came in, and the replica's answer."""

from __future__ import annotations

from dataclasses import dataclass, field

# Headers a proxy must not pass on (RFC 9110 §7.6.1) and the length, which the receiver computes again.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)
REPLICA_HEADER = "x-loradeck-replica"
RETRIED_HEADER = "x-loradeck-retried-after"
BROADCAST_HEADER = "x-loradeck-replicas"  # every replica that answered a broadcast (options, refresh-loras, …)


@dataclass(frozen=True)
class Forwarded:
    """An HTTP request for a replica's app: method, path, raw query string, headers (end-to-end only), body."""

    method: str
    path: str
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    @property
    def target(self) -> str:
        return self.path + (f"?{self.query}" if self.query else "")


@dataclass(frozen=True)
class Answer:
    """A replica's HTTP answer and which replica gave it."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    replica: str
    extra: dict = field(default_factory=dict)  # the replica's pid and node (tests and logs)

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


def end_to_end(headers) -> tuple[tuple[str, str], ...]:
    """``headers`` (pairs) without the hop-by-hop ones."""
    return tuple((k, v) for k, v in headers if k.lower() not in HOP_BY_HOP)
