"""Infotext in picture files, where A1111 puts it and reads it.

- PNG: a ``parameters`` text chunk (tEXt, or iTXt when the text is not Latin-1), as PIL's ``PngInfo.add_text``.
- JPEG / WebP: EXIF ``UserComment`` (tag 0x9286 in the Exif IFD), type UNDEFINED, ``b"UNICODE\\0"`` + UTF-16-BE:
  the bytes ``piexif.helper.UserComment.dump(text, encoding="unicode")`` gives, which A1111 reads back with piexif.
  PIL's ``Exif`` would store the tag as BYTE (piexif then returns a tuple, A1111 fails), so we lay out the few
  bytes of that EXIF block ourselves and hand them to PIL's ``save(exif=...)``.

Reading tries PNG ``parameters``, then EXIF UserComment, then a GIF/WebP ``comment``.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import IO, Any

from PIL import ExifTags, Image
from PIL.PngImagePlugin import PngInfo

from loradeck.errors import FormatError

PARAMETERS_KEY = "parameters"
UNICODE_PREFIX = b"UNICODE\x00"
ASCII_PREFIX = b"ASCII\x00\x00\x00"
EXIF_IFD_POINTER = 0x8769
USER_COMMENT = 0x9286
JPEG_EXIF_LIMIT = 65533 - 2  # an APP1 segment holds 65535 bytes including its length field


# ------------------------------------------------------------------------------------------------ writing
def png_info(infotext: str) -> PngInfo:
    """A PngInfo with the ``parameters`` chunk (tEXt if Latin-1 encodable, else iTXt — PIL decides, as in A1111)."""
    info = PngInfo()
    info.add_text(PARAMETERS_KEY, infotext)
    return info


def user_comment(infotext: str) -> bytes:
    """EXIF UserComment value: ``UNICODE\\0`` + UTF-16-BE (piexif's "unicode" encoding)."""
    return UNICODE_PREFIX + infotext.encode("utf_16_be")


def exif_with_user_comment(infotext: str) -> bytes:
    """A complete ``Exif\\0\\0`` block (big-endian TIFF) whose only entry is the UserComment, typed UNDEFINED."""
    comment = user_comment(infotext)
    ifd0 = 8  # TIFF header is 8 bytes
    exif_ifd = ifd0 + 2 + 12 + 4  # one entry + next-IFD offset
    data = exif_ifd + 2 + 12 + 4
    out = bytearray(b"MM\x00\x2a" + struct.pack(">I", ifd0))
    out += struct.pack(">H", 1) + struct.pack(">HHII", EXIF_IFD_POINTER, 4, 1, exif_ifd) + struct.pack(">I", 0)
    value = struct.pack(">I", data) if len(comment) > 4 else comment.ljust(4, b"\x00")
    out += struct.pack(">H", 1) + struct.pack(">HHI", USER_COMMENT, 7, len(comment)) + value + struct.pack(">I", 0)
    if len(comment) > 4:
        out += comment
    return b"Exif\x00\x00" + bytes(out)


def save_with_infotext(
    image: Image.Image, fp: str | Path | IO[bytes], infotext: str, *, format: str | None = None, **save_kwargs: Any
) -> None:
    """Save ``image`` with its infotext: PNG ``parameters`` chunk, or EXIF UserComment for JPEG/WebP.

    ``format`` defaults to the file suffix. A JPEG whose infotext does not fit in one EXIF segment raises FormatError
    rather than lose the text.
    """
    fmt = (format or Image.registered_extensions().get(Path(str(getattr(fp, "name", fp))).suffix.lower(), "")).upper()
    if fmt == "PNG":
        image.save(fp, format="PNG", pnginfo=png_info(infotext), **save_kwargs)
    elif fmt in ("JPEG", "WEBP"):
        exif = exif_with_user_comment(infotext)
        if fmt == "JPEG" and len(exif) > JPEG_EXIF_LIMIT:
            raise FormatError(fp, f"the infotext ({len(infotext)} characters) is too long for JPEG EXIF; save as PNG")
        image.save(fp, format=fmt, exif=exif, **save_kwargs)
    else:
        raise FormatError(
            fp, f"cannot store generation parameters in a {fmt or 'file of this type'}; use PNG, JPEG or WebP"
        )


# ------------------------------------------------------------------------------------------------ reading
def read_infotext(source: str | Path | IO[bytes] | bytes | Image.Image) -> str | None:
    """The infotext of a picture (file path, bytes, open file or PIL image), or None when it has none."""
    if isinstance(source, Image.Image):
        return infotext_of_image(source)
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        with Image.open(source) as image:
            return infotext_of_image(image)
    except Exception as exc:  # OSError, SyntaxError, ValueError, Pillow's DecompressionBombError, struct.error...
        raise FormatError(source, f"is not a readable image ({type(exc).__name__}: {exc})") from None


def infotext_of_image(image: Image.Image) -> str | None:
    text = image.info.get(PARAMETERS_KEY)
    if isinstance(text, str) and text:
        return text
    comment = _exif_user_comment(image)
    if comment:
        return comment
    other = image.info.get("comment")
    if isinstance(other, bytes):
        other = other.decode("utf8", errors="ignore")
    return other or None


def _exif_user_comment(image: Image.Image) -> str | None:
    try:
        raw = image.getexif().get_ifd(ExifTags.IFD.Exif).get(USER_COMMENT)
    except Exception:  # a broken EXIF block is "no infotext", not a crash
        return None
    if raw is None:
        return None
    if isinstance(raw, tuple):  # written as BYTE by some tools
        raw = bytes(raw)
    if isinstance(raw, str):
        return raw
    return decode_user_comment(raw)


def decode_user_comment(raw: bytes) -> str:
    """Text of a UserComment value: UNICODE (UTF-16, byte order guessed as piexif writes BE but some tools LE),
    ASCII, or undeclared UTF-8 (A1111's fallback)."""
    prefix, body = raw[:8], raw[8:]
    if prefix == UNICODE_PREFIX:
        return body.decode(_utf16_order(body), errors="replace")
    if prefix == ASCII_PREFIX:
        return body.decode("ascii", errors="replace").rstrip("\x00")
    return raw.decode("utf8", errors="ignore").rstrip("\x00")


def _utf16_order(body: bytes) -> str:
    """Mostly-ASCII text in UTF-16 has its zero bytes first (BE) or second (LE); BE when unsure (piexif)."""
    zeros_even = body[0::2].count(0)
    zeros_odd = body[1::2].count(0)
    return "utf_16_le" if zeros_odd > zeros_even else "utf_16_be"


def request_from_png(path: str | Path) -> Any:
    """A ``GenerationRequest`` that re-renders the picture at ``path`` from its infotext (txt2img)."""
    from loradeck.prompt.infotext import infotext_settings
    from loradeck.prompt.samplers import resolve_sampler
    from loradeck.vocab import GenerationRequest

    text = read_infotext(path)
    if not text:
        raise FormatError(path, "has no generation parameters (no PNG 'parameters' chunk or EXIF UserComment)")
    s = infotext_settings(text)
    request = GenerationRequest(prompt=s.prompt, negative_prompt=s.negative_prompt)
    if s.sampler:
        request.sampler, request.scheduler = resolve_sampler(s.sampler, s.schedule_type)
    for attr, value in (
        ("steps", s.steps),
        ("cfg_scale", s.cfg_scale),
        ("seed", s.seed),
        ("width", s.width),
        ("height", s.height),
        ("checkpoint", s.model),
    ):
        if value is not None:
            setattr(request, attr, value)
    request.clip_skip = s.clip_skip
    variation = variation_from_params(s.params)
    if variation is not None:
        request.variation_seed, request.variation_strength = variation
    request.hires = hires_from_params(s.params)
    return request


def variation_from_params(params: dict[str, Any]) -> tuple[int, float] | None:
    """(variation seed, strength) an infotext records, or None when it has no variation."""
    from loradeck.prompt.infotext import typed_param

    strength = typed_param(params, "Variation seed strength", float)
    if not strength:
        return None
    return typed_param(params, "Variation seed", int) or 0, strength


def hires_from_params(params: dict[str, Any]) -> Any:
    """The hires fix an infotext records (``Hires upscale`` or ``Hires resize``), or None."""
    from loradeck.prompt.infotext import typed_param
    from loradeck.vocab import HiresFix

    resize = str(params.get("Hires resize") or "")
    if params.get("Hires upscale") is None and not resize:
        return None
    hr = HiresFix(upscaler=str(params.get("Hires upscaler") or "Latent"))
    if resize:
        x, _, y = resize.partition("x")
        hr.resize_x, hr.resize_y = (
            typed_param({"Hires resize": x}, "Hires resize", int),
            typed_param({"Hires resize": y}, "Hires resize", int),
        )
    else:
        hr.scale = typed_param(params, "Hires upscale", float)
    hr.steps = typed_param(params, "Hires steps", int) or 0
    if params.get("Hires sampler") not in (None, "", "Use same sampler"):
        hr.sampler = str(params["Hires sampler"])
        hr.scheduler = params.get("Hires schedule type") or None
    denoise = typed_param(params, "Denoising strength", float)
    if denoise is not None:
        hr.denoising_strength = denoise
    return hr
