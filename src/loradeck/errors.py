"""Errors a user sees. Each carries one sentence that says what went wrong and where."""

from __future__ import annotations


class LoradeckError(Exception):
    """Base of every error meant for the user; ``str(err)`` is the sentence to show."""


class FormatError(LoradeckError):
    """A file that cannot be read as what it claims to be (truncated, hostile, wrong layout)."""

    def __init__(self, path: object, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


class ModelLoadError(LoradeckError):
    """A base model (checkpoint, diffusers folder, tokenizer) that cannot be loaded."""


class CheckpointNotFound(ModelLoadError):
    """A checkpoint name that matches nothing in the models folder."""


class LoraNotFound(LoradeckError):
    """A LoRA name that resolves to no file in the library."""


class InvalidRequest(LoradeckError):
    """Generation settings that cannot work (impossible size, unknown sampler, bad weight)."""


class Cancelled(LoradeckError):
    """The user interrupted a job."""


class UpstreamError(LoradeckError):
    """A service loradeck talks to (Civitai) failed or refused; ``status`` is its HTTP status when it sent one."""

    status: int | None = None


class PathNotAllowed(InvalidRequest):
    """A name from the network that is a path outside the folders the server may use (HTTP 422). Its sentence never
    depends on whether the target exists."""


class ReplicaUnavailable(LoradeckError):
    """Scale-out (``loradeck serve --ray``): no replica could run the request, or the one running it died (HTTP 503)."""
