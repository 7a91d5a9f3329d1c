"""Numbers in a decoded JSON body that no model may hold: NaN, ±Infinity, whole numbers beyond 64 bits — found
wherever they are (fields, extras, nested options) and refused with one sentence (HTTP 422), never echoed back."""

from __future__ import annotations

import math
from typing import Any

from loradeck.errors import InvalidRequest

INT_RANGE = (-(2**63), 2**64 - 1)  # any whole number anywhere in a body: what fits a 64-bit field


def number_problem(data: Any, where: str = "") -> str | None:
    """One sentence about the first number in ``data`` that is not finite or does not fit 64 bits; None if none."""
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
