"""A1111 prompt styles: ``styles.csv`` (name, prompt, negative_prompt) and how a style merges into a prompt.

A style's text replaces ``{prompt}`` with the user's prompt when it has that placeholder, else it is appended after
a comma; styles apply in the order given (A1111's ``merge_prompts``). Pure: text in, text out.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from loradeck.errors import FormatError


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str = ""
    negative_prompt: str = ""


MAX_STYLES_BYTES = 16 * 1024 * 1024  # A1111 style collections are a few hundred KB


def read_styles(path: Path) -> dict[str, Style]:
    """The styles of an A1111 ``styles.csv``; an absent file has none. A file without a ``name`` column is an error."""
    if not path.is_file():
        return {}
    try:
        if path.stat().st_size > MAX_STYLES_BYTES:
            raise FormatError(path, f"is larger than the {MAX_STYLES_BYTES // 2**20} MB a styles file may be")
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FormatError(path, f"cannot be read as a styles CSV ({exc})") from None
    if rows and "name" not in rows[0]:
        raise FormatError(path, "has no 'name' column (A1111's styles.csv has name, prompt, negative_prompt)")
    styles = {}
    for row in rows:
        name = (row.get("name") or "").strip()
        if name:
            styles[name] = Style(name, row.get("prompt") or "", row.get("negative_prompt") or "")
    return styles


def merge_prompt(style_text: str, prompt: str) -> str:
    if "{prompt}" in style_text:
        return style_text.replace("{prompt}", prompt)
    return ", ".join(part for part in (prompt.strip(), style_text.strip()) if part)


def apply_styles(prompt: str, negative: str, names: list[str], styles: dict[str, Style]) -> tuple[str, str, list[str]]:
    """(prompt, negative prompt, warnings) with the named styles merged in order; unknown names are warned about."""
    warnings = []
    for name in names:
        style = styles.get(name)
        if style is None:
            warnings.append(f"Style {name} is not in styles.csv; it was skipped.")
            continue
        prompt = merge_prompt(style.prompt, prompt)
        negative = merge_prompt(style.negative_prompt, negative)
    return prompt, negative, warnings
