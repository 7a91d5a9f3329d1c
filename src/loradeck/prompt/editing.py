"""A1111 prompt editing: ``[from:to:when]``, ``[to:when]``, ``[from::when]`` and alternation ``[a|b|c]``.

``prompt_schedule(prompt, steps)`` gives A1111's ``(end_at_step, text)`` pairs (modules/prompt_parser.py, current
scheduling): ``when`` with a decimal point is a fraction of the steps, without one a step number, capped at
``steps``; a text is used for sampling steps s (0-based) with s ≤ end_at_step, the first such pair wins. So
``[cat:dog:10]`` at 20 steps draws steps 0–10 with "cat" and 11–19 with "dog"; alternation switches every step from
step 2 on (A1111's own off-by-one, kept so the same prompt gives the same picture).

The grammar is A1111's: plain text (backslash escapes anything), ``( … )`` and ``( … : … )`` emphasis kept verbatim
for the emphasis parser, ``[ … ]`` de-emphasis likewise; stray ``[ ] ( ) :`` are allowed only at the top level. A
prompt that does not parse is used as it is for every step, as in A1111. Pure: no torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBER = re.compile(r"\s*([+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|[+-]?\.\d+(?:[eE][+-]?\d+)?)\s*$")


class _ParseError(Exception):
    pass


@dataclass
class _Scheduled:
    before: list
    after: list
    when: str  # the number as written; resolved against the step count later


@dataclass
class _Alternate:
    options: list[list]


@dataclass
class _Verbatim:
    """Emphasis brackets kept as text: open, parts joined by ':', close."""

    open: str
    parts: list[list]
    close: str


class _Parser:
    def __init__(self, text: str):
        self.s, self.i = text, 0

    def parse(self) -> list:
        nodes = self.sequence(top=True)
        if self.i != len(self.s):
            raise _ParseError
        return nodes

    def sequence(self, top: bool = False) -> list:
        """Nodes up to the first character that closes or separates an enclosing bracket."""
        nodes: list = []
        while self.i < len(self.s):
            ch = self.s[self.i]
            if ch == "\\":
                nodes.append(self.s[self.i : self.i + 2])
                self.i += 2
            elif ch in "([":
                start = self.i
                try:
                    nodes.append(self.paren() if ch == "(" else self.bracket())
                except _ParseError:
                    if not top:
                        raise
                    self.i = start + 1
                    nodes.append(ch)  # an opening bracket that does not parse: text, at the top level only
            elif ch in "]):|":
                if not top or ch == "|":
                    break
                nodes.append(ch)  # stray bracket or colon at the top level: text
                self.i += 1
            else:
                j = self.i
                while j < len(self.s) and self.s[j] not in "\\[]():|":
                    j += 1
                nodes.append(self.s[self.i : j])
                self.i = j
        return nodes

    def _parts(self, close: str, seps: str) -> tuple[list[list], list[str]]:
        self.i += 1  # the opening bracket
        parts, used = [self.sequence()], []
        while self.i < len(self.s) and self.s[self.i] in seps:
            used.append(self.s[self.i])
            self.i += 1
            parts.append(self.sequence())
        if self.i >= len(self.s) or self.s[self.i] != close:
            raise _ParseError
        self.i += 1
        return parts, used

    def paren(self) -> _Verbatim:
        parts, used = self._parts(")", ":")
        if len(used) > 1:
            raise _ParseError
        return _Verbatim("(", parts, ")")

    def bracket(self):
        parts, used = self._parts("]", ":|")
        if not used:
            return _Verbatim("[", parts, "]")
        if set(used) == {"|"}:
            return _Alternate(parts)
        if set(used) != {":"} or len(parts) > 3:
            raise _ParseError
        when = parts[-1]
        if len(when) != 1 or not isinstance(when[0], str) or not _NUMBER.match(when[0]):
            raise _ParseError
        before = parts[0] if len(parts) == 3 else []
        return _Scheduled(before, parts[-2], when[0].strip())


def _steps_of(nodes: list, steps: int, out: set[int]) -> None:
    for node in nodes:
        if isinstance(node, _Scheduled):
            at = _resolve(node.when, steps)
            if at >= 1:
                out.add(at)
            _steps_of(node.before, steps, out)
            _steps_of(node.after, steps, out)
        elif isinstance(node, _Alternate):
            out.update(range(1, steps + 1))
            for option in node.options:
                _steps_of(option, steps, out)
        elif isinstance(node, _Verbatim):
            for part in node.parts:
                _steps_of(part, steps, out)


def _resolve(when: str, steps: int) -> int:
    v = float(when)
    if "." in when:
        v *= steps
    return min(steps, int(v))


def _text_at(nodes: list, step: int, steps: int) -> str:
    out = []
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Scheduled):
            chosen = node.before if step <= _resolve(node.when, steps) else node.after
            out.append(_text_at(chosen, step, steps))
        elif isinstance(node, _Alternate):
            out.append(_text_at(node.options[(step - 1) % len(node.options)], step, steps))
        else:
            inner = ":".join(_text_at(part, step, steps) for part in node.parts)
            out.append(node.open + inner + node.close)
    return "".join(out)


def prompt_schedule(prompt: str, steps: int) -> list[tuple[int, str]]:
    """[(end_at_step, text), …] sorted by step; one pair when the prompt has no editing."""
    try:
        nodes = _Parser(prompt).parse()
    except _ParseError:
        return [(steps, prompt)]
    ends = {steps}
    _steps_of(nodes, steps, ends)
    return [(end, _text_at(nodes, end, steps)) for end in sorted(ends)]


def text_for_step(schedule: list[tuple[int, str]], step: int) -> str:
    """The text A1111 uses at sampling step ``step`` (0-based)."""
    for end, text in schedule:
        if step <= end:
            return text
    return schedule[-1][1]
