"""What a name from the network may lead to: only files in the configured folders.

The HTTP API and the web UI are reached over the network; the CLI is run by the machine's own user. So every
network entry point that takes a checkpoint, a LoRA, a training folder or an output name passes it through here:

- a plain name (``sub/x.safetensors [hash]``, a stem, a hash, ``demo``) is looked up in the library's tables only:
  no file is opened because of its spelling, and nothing outside the library gets into the index;
- a path (absolute, ``..``, ``~``, percent-encoded, backslashed, control characters) is refused with one sentence
  that does not depend on whether the target exists (no existence oracle), unless ``Settings.allowed_paths`` (the
  local user's ``--allow-path``) covers it after symlinks are resolved;
- training data comes from ``Settings.datasets_path`` (``<home>/datasets``) or an allowed folder, again with
  symlinks resolved, and output names must be one plain file name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from loradeck.errors import InvalidRequest, PathNotAllowed
from loradeck.formats.safe_names import (
    check_file_name,
    decoded_forms,
    has_control_chars,
    looks_like_path,
    relative_parts,
)
from loradeck.settings import Settings

DEMO = "demo"  # the embedded demo model's name (loradeck.demo.paths.DEMO)
WIDEN = "a local user can allow more folders with the allowed_paths setting or loradeck serve --allow-path"


def _shown(name: Any) -> str:
    text = str(name)
    return repr(text if len(text) <= 120 else text[:117] + "...")


def real(path: Path | str) -> Path:
    """``path`` with every symlink resolved (missing parts kept as written): what would actually be opened."""
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def under(path: Path | str, roots: Any) -> bool:
    """True when ``path``, symlinks resolved, is one of ``roots`` (symlinks resolved) or inside one."""
    target = real(path)
    return any(target.is_relative_to(real(root)) for root in roots)


def allowed_roots(settings: Settings) -> tuple[Path, ...]:
    return tuple(Path(p) for p in settings.allowed_paths or ())


def plain_absolute(name: str) -> bool:
    """An absolute POSIX path exactly as written: no ``..``/``.`` parts, no encodings, no backslashes, no ``~``."""
    return (
        name.startswith("/")
        and "\\" not in name
        and len(decoded_forms(name)) == 1
        and not any(part in (".", "..") for part in name.split("/"))
        and not has_control_chars(name)
    )


def allowed_path(settings: Settings, name: str) -> Path | None:
    """``name`` as a resolved path when it is a plain absolute path under ``allowed_paths``; else None."""
    roots = allowed_roots(settings)
    if roots and plain_absolute(name) and under(name, roots):
        return real(name)
    return None


# ---------------------------------------------------------------------------------------------------- checkpoints
def checkpoint_refused(name: Any) -> PathNotAllowed:
    return PathNotAllowed(
        f"The checkpoint {_shown(name)} is a path; the API only loads checkpoints by their name in the library "
        f"(see /sdapi/v1/sd-models) or 'demo' ({WIDEN})."
    )


def network_checkpoint(library: Any, settings: Settings, name: Any) -> str:
    """A checkpoint named over the network → "demo", a library title, or a resolved path under ``allowed_paths``.
    PathNotAllowed for other paths; ModelLoadError when a plain name matches nothing in the library."""
    if name in (None, "", DEMO):
        return DEMO
    name = str(name)
    if looks_like_path(name):
        path = allowed_path(settings, name)
        if path is None:
            raise checkpoint_refused(name)
        library.resolve_checkpoint(str(path))  # readable now (ModelLoadError if not), not only when its job runs
        return str(path)
    return library.resolve_checkpoint(name, paths=False).title


def network_checkpoint_file(library: Any, settings: Settings, name: Any) -> str:
    """Like :func:`network_checkpoint`, but the model's file or folder itself (what training opens), or "demo"."""
    title = network_checkpoint(library, settings, name)
    if title == DEMO or title.startswith("/"):
        return title
    return str(library.resolve_checkpoint(title, paths=False).path)


def check_checkpoint_name(name: Any) -> None:
    """For fields we accept but do not act on (``refiner_checkpoint``, ``hr_checkpoint_name``): no paths either."""
    if name not in (None, "") and looks_like_path(str(name)):
        raise checkpoint_refused(name)


# ---------------------------------------------------------------------------------------------------- LoRAs
def check_lora_name(name: Any) -> str:
    """A LoRA name from the network (route or ``<lora:NAME>`` tag): stem, alias or ``subfolder/name``, never a path.
    Lookups are in the library's tables only; this refusal is about the spelling alone."""
    text = str(name)
    if looks_like_path(text):
        raise PathNotAllowed(
            f"The LoRA name {_shown(text)} is a path; LoRAs are named by file stem, alias or subfolder/name inside "
            f"the LoRA folder."
        )
    return text


# ---------------------------------------------------------------------------------------------------- training
def network_dataset(settings: Settings, data: Any) -> Path:
    """A training folder named over the network: a name inside the datasets folder (``cats``, ``sets/cats``) or a
    plain absolute path inside it or under ``allowed_paths``; symlinks are resolved before the check."""
    text = "" if data is None else str(data)
    if not text.strip():
        raise InvalidRequest(f"Give the training data: the name of a folder in {settings.datasets_path}.")
    roots = (settings.datasets_path, *allowed_roots(settings))
    if looks_like_path(text):
        candidate = Path(text) if plain_absolute(text) else None
    else:
        candidate = settings.datasets_path.joinpath(*relative_parts(text))
    if candidate is None or not under(candidate, roots):
        raise PathNotAllowed(
            f"The training data {_shown(text)} is not inside the datasets folder {settings.datasets_path}; over the "
            f"API, give a folder name there ({WIDEN})."
        )
    return real(candidate)


def check_output_name(name: Any, what: str = "The LoRA name") -> str:
    """An output name (the LoRA file's stem, the training folder's name): one plain file name."""
    return check_file_name(str(name) if name is not None else "", what)
