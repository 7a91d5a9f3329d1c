"""Text from files and the network made safe to print on one line: no newlines, no control characters.

A file name or a metadata string may hold ``\\n`` (a second, fake log line), ANSI escapes (terminal control), or
bidirectional overrides (text that reads differently than it is). ``one_line`` escapes them visibly; it does not
touch rich markup, which is handled by printing through ``rich.text.Text`` (never a markup string).
"""

from __future__ import annotations

import re

MAX_LINE = 2000  # a sentence, not a dump: long values are cut with an ellipsis

# C0 and C1 controls, DEL, and the bidi embedding/override/isolate characters.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match[str]) -> str:
    ch = m.group()
    if ch in "\n\r\t":
        return " "
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def one_line(text: object, limit: int = MAX_LINE) -> str:
    """``str(text)`` with newlines and tabs as spaces, other control characters escaped, cut to ``limit``."""
    s = _CONTROL.sub(_escape, str(text)).strip()
    return s if len(s) <= limit else s[: limit - 1] + "…"
