"""Civitai failures, each one sentence that says what went wrong, where, and what to do about it.

Every error carries ``status`` (the HTTP status when there was one) and ``subject`` (what we were fetching, e.g.
``model version 67890``) so the server can map it to a response without parsing the sentence. No sentence ever
contains the API key: URLs are passed through ``redact_url`` before they reach a message.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from loradeck.errors import InvalidRequest, UpstreamError

KEY_HELP = "create a key at https://civitai.com/user/account and pass it with --token or set CIVITAI_API_TOKEN"
_SECRET_PARAMS = {"token", "api_key", "apikey", "key"}


def redact_url(url: str) -> str:
    """``url`` with any ``token=`` style query value and user:password replaced by ``***`` (safe to print)."""
    parts = urlsplit(str(url))
    query = urlencode(
        [(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
        safe="*",
    )
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class CivitaiError(UpstreamError):
    """Base of every Civitai failure; ``str(err)`` is the sentence to show."""

    status: int | None = None

    def __init__(self, sentence: str, *, subject: str = "", status: int | None = None):
        self.subject = subject
        if status is not None:
            self.status = status
        super().__init__(sentence)


class LoginRequired(CivitaiError):
    """401: no key, a refused key, or a redirect to the login page."""

    status = 401

    def __init__(self, subject: str, *, token_sent: bool):
        if token_sent:
            sentence = f"Civitai refused the API key for {subject} (401); check the key is valid and not revoked, or {KEY_HELP}."
        else:
            sentence = f"Civitai requires an API key to download {subject} (401); {KEY_HELP}."
        super().__init__(sentence, subject=subject)
        self.token_sent = token_sent


class DownloadsDisabled(CivitaiError):
    status = 401

    def __init__(self, subject: str):
        super().__init__(f"The creator of {subject} has disabled downloads on Civitai (401).", subject=subject)


class EarlyAccess(CivitaiError):
    """403 with ``{"error": "Early Access", "deadline": ...}``."""

    status = 403

    def __init__(self, subject: str, deadline: datetime | None):
        self.deadline = deadline
        when = f" until {deadline:%Y-%m-%d %H:%M} UTC" if deadline else ""
        super().__init__(
            f"{subject[:1].upper()}{subject[1:]} is in Early Access on Civitai{when} (403); "
            "buy early access on civitai.com with the account of your API key, or wait until it ends.",
            subject=subject,
        )


class AccessDenied(CivitaiError):
    status = 403

    def __init__(self, subject: str, detail: str = ""):
        why = f": {detail}" if detail else ""
        super().__init__(f"Civitai refused access to {subject} (403{why}).", subject=subject)


class NotFound(CivitaiError):
    status = 404

    def __init__(self, subject: str):
        super().__init__(f"Civitai has no {subject} (404); check the id or URL.", subject=subject)


class Gone(CivitaiError):
    status = 410

    def __init__(self, subject: str):
        super().__init__(f"Civitai has archived {subject}; it can no longer be downloaded (410).", subject=subject)


class RateLimited(CivitaiError):
    status = 429

    def __init__(self, subject: str, attempts: int, detail: str = ""):
        why = f" ({detail})" if detail else ""
        super().__init__(
            f"Civitai kept rate-limiting requests for {subject} (429) after {attempts} attempts{why}; try again later.",
            subject=subject,
        )


class Unavailable(CivitaiError):
    """503/5xx after the bounded retries."""

    def __init__(self, subject: str, status: int, attempts: int):
        super().__init__(
            f"Civitai was unavailable ({status}) for {subject} after {attempts} attempts; try again later.",
            subject=subject,
            status=status,
        )


class BadRequest(CivitaiError):
    def __init__(self, subject: str, status: int, detail: str = ""):
        why = f": {detail}" if detail else ""
        super().__init__(f"Civitai rejected the request for {subject} ({status}{why}).", subject=subject, status=status)


class NotJson(CivitaiError):
    """An HTML page (Cloudflare challenge, outage page) where the API should answer JSON."""

    def __init__(self, subject: str, url: str):
        super().__init__(
            f"Civitai answered {redact_url(url)} for {subject} with a web page instead of JSON "
            "(a Cloudflare challenge or an outage); try again later or check --civitai-url.",
            subject=subject,
        )


class NotAModelFile(CivitaiError):
    """A 200 whose body is an HTML page (usually a login page) or a JSON message, not model bytes."""

    def __init__(self, subject: str, kind: str):
        if "html" in kind.lower():
            hint = f"this is usually a login page: {KEY_HELP}"
        else:
            hint = "try again later, and check the API key if it keeps happening"
        super().__init__(
            f"Civitai sent {kind} instead of the file for {subject}, so nothing was saved; {hint}.", subject=subject
        )


class ConnectionDropped(CivitaiError):
    """The transfer broke more times than the retry bound; the ``.part`` file is kept for the next try."""

    def __init__(self, subject: str, part: object, done: int, total: int | None, attempts: int):
        of = f" of {total}" if total else ""
        super().__init__(
            f"The connection kept dropping while downloading {subject} ({done}{of} bytes after {attempts} attempts); "
            f"run the download again to resume from {part}.",
            subject=subject,
        )
        self.part, self.done, self.total = part, done, total


class CivitaiUnreachable(CivitaiError):
    def __init__(self, subject: str, url: str, attempts: int, reason: str):
        super().__init__(
            f"Could not reach Civitai at {redact_url(url)} for {subject} after {attempts} attempts ({reason}); "
            "check the network or --civitai-url.",
            subject=subject,
        )


class SizeMismatch(CivitaiError):
    def __init__(self, subject: str, got: int, expected: int):
        super().__init__(
            f"The download of {subject} is {got} bytes but Civitai lists {expected}; "
            "the partial file was deleted and nothing was installed.",
            subject=subject,
        )
        self.got, self.expected = got, expected


class HashMismatch(CivitaiError):
    def __init__(self, subject: str, got: str, expected: str):
        super().__init__(
            f"The download of {subject} has SHA256 {got[:12]}… but Civitai lists {expected[:12].upper()}…; "
            "the file was deleted and nothing was installed.",
            subject=subject,
        )
        self.got, self.expected = got, expected


class InvalidReference(CivitaiError, InvalidRequest):
    def __init__(self, ref: str):
        super().__init__(
            f"'{redact_url(ref)}' is not a Civitai model URL, download URL, AIR or model/version id.", subject=ref
        )


class NoSuchFile(CivitaiError):
    def __init__(self, subject: str, file_id: int | None):
        what = f"no file with id {file_id}" if file_id is not None else "no downloadable file"
        super().__init__(f"Civitai {subject} has {what}.", subject=subject)


class UnsupportedType(CivitaiError):
    def __init__(self, subject: str, model_type: str):
        super().__init__(
            f"Civitai {subject} is a {model_type}; loradeck installs LORA, LoCon, DoRA and Checkpoint models "
            "(give a destination folder to download it anyway).",
            subject=subject,
        )


class TargetExists(CivitaiError):
    def __init__(self, subject: str, path: object):
        super().__init__(
            f"{path} already exists and differs from Civitai's file for {subject}; move it away or allow overwriting.",
            subject=subject,
        )
