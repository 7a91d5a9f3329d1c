"""Write the Civitai sidecars beside a model: ``name.civitai.info``, ``name.json`` and ``name.preview.png``.

The file formats (A1111 keys, unknown keys kept, atomic writes) live in ``loradeck.formats.sidecars``; this module only
decides what Civitai's version record puts into them and fetches the preview image.
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from loradeck.civitai.errors import CivitaiError
from loradeck.civitai.http import CivitaiHttp
from loradeck.civitai.records import ModelImage, ModelVersion
from loradeck.errors import FormatError
from loradeck.formats.sidecars import (
    find_preview,
    read_user_metadata,
    user_metadata_from_civitai,
    write_civitai_info,
    write_preview,
    write_user_metadata,
)

MAX_PREVIEW_BYTES = 32 << 20  # a preview is a thumbnail; refuse anything absurd
PREVIEW_WIDTH = 768  # Civitai resizes on the fly when /original=true/ becomes /width=N/


class _TextOnly(HTMLParser):
    """Collects the text of an HTML fragment, with line breaks where blocks end."""

    BREAKS = {"br", "p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "ul", "ol"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(fragment: str | None) -> str:
    """Civitai descriptions are HTML; A1111 shows ``description`` as text. Tags dropped, entities decoded."""
    if not fragment:
        return ""
    parser = _TextOnly()
    parser.feed(fragment)
    parser.close()
    text = html.unescape("".join(parser.parts))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def api_weight(version: ModelVersion) -> float:
    """A preferred weight when the version record carries one (``settings.strength``), else 0 = A1111's default."""
    settings = version.raw.get("settings")
    strength = settings.get("strength") if isinstance(settings, dict) else None
    if isinstance(strength, int | float) and not isinstance(strength, bool) and 0 < strength <= 2:
        return float(strength)
    return 0.0


def preview_url(image: ModelImage) -> str:
    """Ask Civitai's image CDN for a resized copy instead of the multi-megabyte original."""
    return image.url.replace("/original=true/", f"/width={PREVIEW_WIDTH}/")


@dataclass
class SidecarResult:
    written: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # one sentence each; a missing preview never fails a download


def write_civitai_sidecars(
    client: CivitaiHttp,
    model_path: Path,
    version: ModelVersion,
    *,
    sha256: str | None = None,
    nsfw: bool = False,
    model_description: str | None = None,
    replace_preview: bool = True,
) -> SidecarResult:
    """Write ``.civitai.info`` (raw version JSON), ``.json`` (A1111 keys; the user's non-empty values and unknown keys
    kept; plus ``modelId``/``modelVersionId``/``sha256`` as sd-civitai-browser-plus does) and ``.preview.png``.

    ``replace_preview=False`` keeps any preview already beside the model (identify must not clobber a user's)."""
    out = SidecarResult()
    out.written.append(write_civitai_info(model_path, version.raw))
    try:
        keep = read_user_metadata(model_path)
    except FormatError:
        keep = None  # a broken name.json is rewritten from Civitai's data
    described = dict(version.raw, description=html_to_text(version.description) or html_to_text(model_description))
    meta = user_metadata_from_civitai(described, preferred_weight=api_weight(version), keep=keep)
    meta.extra.update({"modelId": version.model_id, "modelVersionId": version.id})
    if sha256:
        meta.extra["sha256"] = sha256.upper()
    out.written.append(write_user_metadata(model_path, meta))
    if replace_preview or find_preview(model_path) is None:
        _write_preview(client, model_path, version, nsfw, out)
    return out


def _write_preview(
    client: CivitaiHttp, model_path: Path, version: ModelVersion, nsfw: bool, out: SidecarResult
) -> None:
    image = version.preview(nsfw)
    if image is None:
        out.warnings.append(f"No preview for {version.subject}: no image within the NSFW setting.")
        return
    try:
        data = fetch_image(client, preview_url(image), f"the preview of {version.subject}")
        out.written.append(write_preview(model_path, to_png(data), "png"))
    except (CivitaiError, OSError, ValueError) as exc:
        out.warnings.append(f"No preview for {version.subject}: {exc}")


def fetch_image(client: CivitaiHttp, url: str, subject: str) -> bytes:
    resp = client.send("GET", url, subject, stream=True)
    try:
        chunks, size = [], 0
        for chunk in resp.iter_bytes():
            size += len(chunk)
            if size > MAX_PREVIEW_BYTES:
                raise ValueError(f"the image is larger than {MAX_PREVIEW_BYTES >> 20} MiB")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        resp.close()


def to_png(data: bytes) -> bytes:
    """Any image Pillow reads (Civitai serves JPEG/WebP/PNG) re-encoded as PNG; ValueError if it is not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            mode = "RGBA" if img.mode in ("RGBA", "LA") or "transparency" in img.info else "RGB"
            buf = io.BytesIO()
            img.convert(mode).save(buf, format="PNG")
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError("the preview is not an image Pillow can read") from exc
    return buf.getvalue()
