"""A1111 request fields loradeck cannot honour must not pass silently: refused with a 422, or answered with a
warning in ``info.warnings``."""

from __future__ import annotations

from typing import Any

from loradeck.errors import InvalidRequest

NO_SCRIPT = (None, "", "None", "none")
SCRIPTS = {"txt2img": ("x/y/z plot",), "img2img": ()}  # the A1111 scripts loradeck runs (server/grid_routes.py)


def check_fields(body: Any, kind: str = "txt2img") -> None:
    """Refuse what would give a wrong answer if ignored: an A1111 script loradeck does not run."""
    name = getattr(body, "script_name", None)
    if name not in NO_SCRIPT and str(name).strip().lower() not in SCRIPTS[kind]:
        runs = ", ".join(SCRIPTS[kind]) or "none"
        raise InvalidRequest(
            f"Script {name!r} is not available on {kind}: loradeck runs only these A1111 scripts: {runs} "
            "(GET /sdapi/v1/scripts); send the request without script_name."
        )


def field_warnings(body: Any) -> list[str]:
    """Warnings for fields that were accepted but not acted on (the picture is still the one asked for)."""
    warnings = []
    if getattr(body, "restore_faces", None):
        warnings.append("restore_faces was ignored: loradeck has no face restorer (GET /sdapi/v1/face-restorers).")
    return warnings
