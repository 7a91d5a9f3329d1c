"""Is a name from the network a plain name or a path in disguise? Pure string checks, no file system.

The server takes names (a checkpoint title, a LoRA's ``subfolder/name``, a dataset folder, an output name) and must
never let one of them reach a file outside its folder. These checks look at the text only, so their answer cannot
depend on what exists on disk (no existence oracle); the folder-containment check on real paths lives in
``loradeck.library.confine``.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath
from urllib.parse import unquote

from loradeck.errors import InvalidRequest

_DRIVE = re.compile(r"^[A-Za-z]:")  # C:\x, C:x, C:/x
_RESERVED = set('<>:"|?*')  # not allowed in a Windows file name (A1111 strips them too)
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
MAX_FILE_NAME = 200  # characters; leaves room for ".safetensors" and the ".part" suffix under the usual 255 bytes


def has_control_chars(text: str) -> bool:
    """NUL, newlines, escapes, bidi overrides… (Unicode category C*): never part of a name a person typed."""
    return any(unicodedata.category(c).startswith("C") for c in text)


def decoded_forms(text: str, rounds: int = 3) -> list[str]:
    """``text`` and its percent-decodings (``%2e%2e%2f`` → ``../``, ``%252e`` twice), backslashes read as ``/``.
    A name is judged by every form, so an encoding that some later layer might undo cannot hide a path."""
    forms = [text]
    for _ in range(rounds):
        decoded = unquote(forms[-1])
        if decoded == forms[-1]:
            break
        forms.append(decoded)
    return [f.replace("\\", "/") for f in forms]


def looks_like_path(name: str) -> bool:
    """True when ``name`` is absolute (``/x``, ``~``, ``C:``, ``\\\\server``), climbs (a ``..`` or ``.`` part), or has
    control characters, in any decoded form. ``sub/folder/name`` (a library name) is not a path."""
    if has_control_chars(name):
        return True
    for form in decoded_forms(name):
        if has_control_chars(form):
            return True
        if form.startswith(("/", "~")) or _DRIVE.match(form):
            return True
        if any(part in (".", "..") for part in form.split("/")):
            return True
    return False


def check_file_name(name: str, what: str = "The name") -> str:
    """``name`` if it can be one file's name in one folder, as A1111 allows file names; else InvalidRequest with one
    sentence. Refused: empty, separators, ``..``, hidden (leading dot), control or reserved characters, Windows device
    names, a trailing dot or space, longer than MAX_FILE_NAME."""
    why = _file_name_problem(name)
    if why:
        shown = name if not isinstance(name, str) or len(name) <= 80 else name[:77] + "..."
        raise InvalidRequest(f"{what} {shown!r} cannot be a file name: {why}.")
    return name


def _file_name_problem(name: str) -> str | None:
    if not isinstance(name, str) or not name.strip():
        return "it is empty"
    if has_control_chars(name):
        return "it has control characters"
    forms = decoded_forms(name)
    if any("/" in f for f in forms):
        return "it has a folder separator (/ or \\)"
    if any(f in (".", "..") for f in forms):
        return "it names a folder, not a file"
    if any(f.startswith(".") for f in forms):
        return "it starts with a dot (a hidden file)"
    if any(c in _RESERVED for c in name):
        return 'it has one of the characters < > : " | ? *'
    if name != name.rstrip(". "):
        return "it ends with a dot or a space"
    if name.split(".")[0].upper() in _WINDOWS_DEVICES:
        return "it is a reserved device name"
    if len(name) > MAX_FILE_NAME:
        return f"it is longer than {MAX_FILE_NAME} characters"
    return None


def relative_parts(name: str) -> tuple[str, ...]:
    """The parts of a relative ``sub/folder/name`` (backslashes as ``/``); call only when ``looks_like_path`` is
    False."""
    return tuple(p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", "/"))
