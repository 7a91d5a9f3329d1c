"""A1111's attention syntax: ``(x)`` ×1.1, ``[x]`` ÷1.1, ``(x:1.3)``, nesting, escapes and ``BREAK``.

The result is a list of (text, weight) fragments, equal-weight neighbours merged, with ``("BREAK", -1.0)`` where the
prompt asks for a new 75-token chunk. One deliberate difference from A1111: a BREAK inside brackets stays a BREAK
(A1111 multiplies its -1 marker and then feeds the word "BREAK" to CLIP as text).
"""

from __future__ import annotations

import re
from typing import NamedTuple

# Alternatives in A1111's order: escapes, a lone backslash, "(", "[", ":weight)", ")", "]", plain text, a lone ":".
ATTENTION_RE = re.compile(r"\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:")
BREAK_RE = re.compile(r"\s*\bBREAK\b\s*", re.S)
ROUND = 1.1
SQUARE = 1 / 1.1
BREAK_WEIGHT = -1.0


class Fragment(NamedTuple):
    text: str
    weight: float

    @property
    def is_break(self) -> bool:
        return self.text == "BREAK" and self.weight == BREAK_WEIGHT


BREAK = Fragment("BREAK", BREAK_WEIGHT)


def parse_prompt_attention(text: str) -> list[Fragment]:
    """Split a prompt into weighted fragments exactly as A1111's ``parse_prompt_attention`` does.

    >>> parse_prompt_attention("an (important) word")
    [Fragment(text='an ', weight=1.0), Fragment(text='important', weight=1.1), Fragment(text=' word', weight=1.0)]
    """
    res: list[list] = []  # [text, weight, is_break]; mutable while brackets close
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply_from(start: int, factor: float) -> None:
        for item in res[start:]:
            if not item[2]:
                item[1] *= factor

    for m in ATTENTION_RE.finditer(text):
        token, weight = m.group(0), m.group(1)
        if token.startswith("\\"):
            res.append([token[1:], 1.0, False])  # an escape is its character; a lone backslash is dropped (A1111)
        elif token == "(":
            round_open.append(len(res))
        elif token == "[":
            square_open.append(len(res))
        elif weight is not None and round_open and _is_float(weight):
            multiply_from(round_open.pop(), float(weight))
        elif token == ")" and round_open:
            multiply_from(round_open.pop(), ROUND)
        elif token == "]" and square_open:
            multiply_from(square_open.pop(), SQUARE)
        else:
            for i, part in enumerate(BREAK_RE.split(token)):
                if i > 0:
                    res.append(["BREAK", BREAK_WEIGHT, True])
                res.append([part, 1.0, False])
    # Unclosed brackets weigh everything after them.
    for start in round_open:
        multiply_from(start, ROUND)
    for start in square_open:
        multiply_from(start, SQUARE)
    if not res:
        return [Fragment("", 1.0)]
    merged: list[list] = [res[0]]
    for item in res[1:]:
        last = merged[-1]
        if item[1] == last[1] and not item[2] and not last[2]:
            last[0] += item[0]
        else:
            merged.append(item)
    return [Fragment(t, w) for t, w, _ in merged]


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:  # e.g. "(x:.)" — A1111 crashes here; we read it as literal text
        return False
    return True


def uses_emphasis(text: str) -> bool:
    """True when some fragment has a weight other than 1 (A1111 then records ``Emphasis: Original`` on paste)."""
    return any(f.weight != 1.0 and not f.is_break for f in parse_prompt_attention(text))
