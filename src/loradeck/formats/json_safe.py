"""JSON from files and the network, parsed with bounds: nesting depth, size, and no NaN/Infinity.

``json.loads`` recurses once per nesting level and raises ``RecursionError`` (not a ``JSONDecodeError``) on deep
input; what it does parse may still be too deep for the recursive encoders downstream (FastAPI's
``jsonable_encoder``, rich). It also accepts ``NaN``/``Infinity``, which Starlette then refuses to encode (a 500).
``loads`` turns all of these into one ``FormatError`` sentence; ``loads_or_none`` into None for optional fields.
"""

from __future__ import annotations

import json
from typing import Any

from loradeck.errors import FormatError

MAX_DEPTH = 64  # real sidecars and metadata are 2–4 levels deep
MAX_CHARS = 64 * 1024 * 1024


class _Refused(ValueError):
    pass


def _no_constants(name: str) -> Any:
    raise _Refused(f"contains {name}, which JSON does not allow")


def depth_of(value: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion (a scalar is 0, ``[]`` is 1)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            depth += 1
            deepest = max(deepest, depth)
            stack.extend((child, depth) for child in item if isinstance(child, dict | list))
    return deepest


def loads(text: str | bytes, path: object, what: str = "JSON", *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``text``; raise ``FormatError(path, …)`` for invalid, non-finite, too large or too deep JSON."""
    if len(text) > MAX_CHARS:
        raise FormatError(path, f"{what} is {len(text)} bytes, more than the {MAX_CHARS} allowed")
    try:
        doc = json.loads(text, parse_constant=_no_constants)
    except _Refused as e:
        raise FormatError(path, f"{what} {e}") from None
    except RecursionError:
        raise FormatError(path, f"{what} is nested too deeply (more than {max_depth} levels)") from None
    except json.JSONDecodeError as e:
        raise FormatError(path, f"{what} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except (ValueError, UnicodeDecodeError, MemoryError) as e:  # e.g. an integer of more than 4,300 digits
        raise FormatError(path, f"{what} cannot be parsed ({_first_line(e)})") from None
    if depth_of(doc) > max_depth:
        raise FormatError(path, f"{what} is nested too deeply (more than {max_depth} levels)")
    return doc


def loads_or_none(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any | None:
    """``loads`` for optional fields: None when the text is not acceptable JSON."""
    try:
        return loads(text, "<text>", max_depth=max_depth)
    except FormatError:
        return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
