"""The HTTP layer under the Civitai client: auth per origin, manual redirects, bounded retries, error mapping.

Why manual redirects: the download endpoint answers 307 to a pre-signed storage URL on another host, which must not
receive our API key, and a redirect to ``/login`` means "key missing" and must never be followed into an HTML page
that would then be saved as a model (docs/reference/civitai-api.md §4.2).
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from loradeck.civitai.errors import (
    AccessDenied,
    BadRequest,
    CivitaiError,
    CivitaiUnreachable,
    DownloadsDisabled,
    EarlyAccess,
    Gone,
    LoginRequired,
    NotFound,
    NotJson,
    RateLimited,
    Unavailable,
    redact_url,
)
from loradeck.civitai.records import parse_time

log = logging.getLogger("loradeck.civitai")

DEFAULT_BASE_URL = "https://civitai.com"
CIVITAI_HOSTS = ("civitai.com", "civitai.red")  # and their subdomains (docs/reference/civitai-api.md §1)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_REDIRECTS = 5


def user_agent() -> str:
    """A non-browser User-Agent: browser-like ones get HTML login redirects instead of JSON errors."""
    try:
        from importlib.metadata import version

        return f"loradeck/{version('loradeck')}"
    except Exception:  # not installed (running from a source tree)
        return "loradeck/dev"


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), ``None`` if absent/garbled."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _short(text: str, limit: int = 160) -> str:
    """A one-line excerpt of an error body for a sentence; HTML is dropped entirely."""
    if "<html" in text[:500].lower() or "<!doctype" in text[:500].lower():
        return ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_fields(resp: httpx.Response) -> dict[str, Any]:
    """``{"error":…, "message":…, "deadline":…}`` from a JSON error body, or ``{"message": text}`` from plain text."""
    try:
        resp.read()
        text = resp.text
    except httpx.HTTPError:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {"message": _short(text)}
    if isinstance(data, dict):
        return data
    return {"message": _short(str(data))}


def is_login_redirect(location: str) -> bool:
    path = urlsplit(location).path.lower()
    return path.rstrip("/").endswith("/login") or "reason=download-auth" in location


class CivitaiHttp:
    """Holds the connection pool, the key and the retry policy. The key is never part of ``repr`` or any message.

    ``sleep`` is injectable so tests of 429/503 and dropped connections run without waiting.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 1.0,
        max_wait: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ):
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.__token = token or None
        self.retries, self.backoff, self.max_wait, self.sleep = retries, backoff, max_wait, sleep
        self._http = httpx.Client(
            follow_redirects=False,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            headers={"User-Agent": user_agent()},
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any):
        """From ``loradeck.settings.Settings`` (``civitai_url``, ``civitai_token``)."""
        return cls(settings.civitai_url, settings.civitai_token, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, token={'***' if self.__token else None})"

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def has_token(self) -> bool:
        return self.__token is not None

    def api_url(self, path: str) -> str:
        return f"{self.base_url}/api/v1/{path.lstrip('/')}"

    def authorized(self, url: str) -> bool:
        """Whether ``url`` may receive the key: the configured origin, or a Civitai host over https."""
        if _origin(url) == _origin(self.base_url):
            return True
        scheme, host, _ = _origin(url)
        return scheme == "https" and any(host == h or host.endswith("." + h) for h in CIVITAI_HOSTS)

    def _headers(self, url: str, extra: dict[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.__token and self.authorized(url):
            headers["Authorization"] = f"Bearer {self.__token}"
        return headers

    def wait_time(self, attempt: int, retry_after: str | None) -> float:
        """Retry-After when the server gives one, else exponential backoff; both capped at ``max_wait``."""
        hinted = parse_retry_after(retry_after)
        delay = hinted if hinted is not None else self.backoff * (2**attempt)
        return min(delay, self.max_wait)

    def send(
        self,
        method: str,
        url: str,
        subject: str,
        *,
        params: Iterable[tuple[str, Any]] | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        passthrough: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        """The final response after redirects and retries: 2xx or a status in ``passthrough``; anything else raises
        the matching ``CivitaiError``. With ``stream=True`` the caller must close the response."""
        attempts = self.retries + 1
        for attempt in range(attempts):
            try:
                resp = self._follow(method, url, subject, params, json_body, headers, stream)
            except httpx.TransportError as exc:
                if attempt + 1 >= attempts:
                    raise CivitaiUnreachable(subject, url, attempts, type(exc).__name__) from None
                self.sleep(self.wait_time(attempt, None))
                continue
            if resp.is_success or resp.status_code in passthrough:
                return resp
            if resp.status_code in RETRY_STATUSES and attempt + 1 < attempts:
                retry_after = resp.headers.get("Retry-After")
                resp.close()
                log.info("Civitai answered %s for %s; retrying", resp.status_code, redact_url(url))
                self.sleep(self.wait_time(attempt, retry_after))
                continue
            try:
                raise self.error_for(resp, subject, attempts)
            finally:
                resp.close()
        raise AssertionError("unreachable")  # the loop either returns or raises

    def _follow(self, method, url, subject, params, json_body, headers, stream) -> httpx.Response:
        for _ in range(MAX_REDIRECTS + 1):
            log.debug("%s %s", method, redact_url(url))
            request = self._http.build_request(
                method, url, params=params, json=json_body, headers=self._headers(url, headers)
            )
            resp = self._http.send(request, stream=stream)
            if not resp.is_redirect:
                return resp
            location = resp.headers.get("Location", "")
            resp.close()
            target = urljoin(str(resp.request.url), location)
            if is_login_redirect(target):
                raise LoginRequired(subject, token_sent="authorization" in resp.request.headers)
            # The next hop gets the key only if it is an authorised origin (never the storage host).
            url, params = target, None
            if resp.status_code == 303:
                method, json_body = "GET", None
        raise CivitaiError(f"Civitai redirected {subject} more than {MAX_REDIRECTS} times.", subject=subject)

    def error_for(self, resp: httpx.Response, subject: str, attempts: int) -> CivitaiError:
        """The one-sentence error for a failed response (after retries)."""
        status = resp.status_code
        fields = _error_fields(resp)
        message = str(fields.get("message") or "")
        if status == 401:
            if "disabled downloads" in message.lower():
                return DownloadsDisabled(subject)
            return LoginRequired(subject, token_sent="authorization" in resp.request.headers)
        if status == 403:
            if str(fields.get("error", "")).lower() == "early access":
                return EarlyAccess(subject, parse_time(fields.get("deadline")))
            return AccessDenied(subject, _short(message or str(fields.get("error") or "")))
        if status == 404:
            return NotFound(subject)
        if status == 410:
            return Gone(subject)
        if status == 429:
            return RateLimited(subject, attempts, _short(message or str(fields.get("error") or ""), 120))
        if status >= 500:
            return Unavailable(subject, status, attempts)
        return BadRequest(subject, status, _short(message or str(fields.get("error") or "")))

    def get_json(self, url: str, subject: str, params: Iterable[tuple[str, Any]] | None = None) -> Any:
        return self._json(self.send("GET", url, subject, params=params), subject)

    def post_json(self, url: str, subject: str, body: Any) -> Any:
        return self._json(self.send("POST", url, subject, json_body=body), subject)

    @staticmethod
    def _json(resp: httpx.Response, subject: str) -> Any:
        head = resp.content[:64].lstrip()
        if "html" in resp.headers.get("Content-Type", "").lower() or head[:1] == b"<":
            raise NotJson(subject, str(resp.request.url))
        try:
            return resp.json()
        except ValueError:
            raise NotJson(subject, str(resp.request.url)) from None
