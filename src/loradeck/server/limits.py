"""Request limits (``Settings.limits``): checked at the door, before a job is queued, so a client gets 422 at once."""

from __future__ import annotations

import json
import math
from typing import Any

from loradeck.errors import InvalidRequest
from loradeck.requests import GenerationRequest
from loradeck.settings import Limits

# ---------------------------------------------------------------------------------------------------- numeric bounds
# Every bound the API checks on a number, in one table (the sizes, steps and batch limits come from Settings.limits).
MAX_BATCH_COUNT = 100  # A1111's UI maximum for "Batch count" (n_iter)
INT_RANGE = (-(2**63), 2**64 - 1)  # any whole number anywhere in a body: what fits a 64-bit field
SEED_RANGE = (-1, 2**64 - 1)  # -1 = random; torch's generator takes any 64-bit unsigned seed (ComfyUI's too)
CFG_SCALE_RANGE = (0.0, 100.0)  # A1111's slider stops at 30; far beyond 100 the picture is only noise or black
STRENGTH_RANGE = (0.0, 1.0)  # variation strength (subseed_strength), denoising strength
HR_SCALE_RANGE = (0.0, 16.0)  # the hires target must also fit Limits.max_side
CLIP_SKIP_RANGE = (1, 12)  # A1111's slider (CLIP_stop_at_last_layers)


def number_problem(data: Any, where: str = "") -> str | None:
    """One sentence about the first number in a decoded JSON body that is not finite (NaN, Infinity) or does not fit
    64 bits, wherever it is (fields, extras, nested options); None when every number is fine."""
    if isinstance(data, bool):
        return None
    if isinstance(data, float) and not math.isfinite(data):
        shown = "NaN" if math.isnan(data) else ("Infinity" if data > 0 else "-Infinity")
        return f"{where or 'The body'} is {shown}; every number in a request must be finite."
    if isinstance(data, int) and not INT_RANGE[0] <= data <= INT_RANGE[1]:
        return f"{where or 'The body'} is {data}, which does not fit in 64 bits."
    if isinstance(data, dict):
        for key, value in data.items():
            found = number_problem(value, f"{where}.{key}" if where else str(key))
            if found:
                return found
    elif isinstance(data, list | tuple):
        for i, value in enumerate(data):
            found = number_problem(value, f"{where}[{i}]")
            if found:
                return found
    return None


def check_numbers(data: Any) -> None:
    """InvalidRequest for a body with a non-finite or oversized number (bodies that no pydantic model checks)."""
    problem = number_problem(data)
    if problem:
        raise InvalidRequest(problem)


def _in(name: str, value: float, bounds: tuple[float, float]) -> None:
    lo, hi = bounds
    if not (isinstance(value, int | float) and math.isfinite(value) and lo <= value <= hi):
        raise InvalidRequest(f"{name} must be between {lo:g} and {hi:g}, not {value}.")


def check_seed(name: str, seed: int, pictures: int = 1) -> None:
    """-1 (random) or a seed whose last picture's seed (seed + pictures - 1) still fits SEED_RANGE."""
    lo, hi = SEED_RANGE
    if not (seed == lo or 0 <= seed <= hi - max(0, pictures - 1)):
        raise InvalidRequest(f"{name} must be -1 (random) or a whole number from 0 to {hi}, not {seed}.")


def check_generation(request: GenerationRequest, limits: Limits) -> None:
    """Raise InvalidRequest (one sentence) when the request is over a limit or impossible."""
    pictures = max(1, request.batch_size) * max(1, request.batch_count)
    check_seed("The seed", request.seed, pictures)
    check_seed("The variation seed (subseed)", request.variation_seed, pictures)
    _in("The CFG scale", request.cfg_scale, CFG_SCALE_RANGE)
    _in("The variation strength (subseed_strength)", request.variation_strength, STRENGTH_RANGE)
    _in("The denoising strength", request.denoising_strength, STRENGTH_RANGE)
    _in("The CLIP skip (CLIP_stop_at_last_layers)", request.clip_skip, CLIP_SKIP_RANGE)
    if request.hires is not None:
        _in("The hires scale (hr_scale)", request.hires.scale, HR_SCALE_RANGE)
        _in("The hires denoising strength", request.hires.denoising_strength, STRENGTH_RANGE)
        _in("The hires steps (hr_second_pass_steps)", request.hires.steps, (0, limits.max_steps))
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
