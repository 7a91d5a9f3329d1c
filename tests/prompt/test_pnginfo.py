"""Infotext in PNG (parameters tEXt/iTXt) and JPEG/WebP (EXIF UserComment as piexif writes it), both ways."""

import io
import struct
import zlib

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from loradeck.errors import FormatError
from loradeck.prompt.pnginfo import (
    decode_user_comment,
    exif_with_user_comment,
    read_infotext,
    request_from_png,
    save_with_infotext,
    user_comment,
)

TEXT = (
    "a castle <lora:ghibli:0.7>\nNegative prompt: blurry\n"
    'Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.0, Seed: 42, Size: 16x16, Lora hashes: "ghibli: 0123456789ab"'
)
UNICODE_TEXT = TEXT + ", Note: 東京 — 𝄞 café"


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, out = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        out.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def _save(fmt: str, text: str) -> bytes:
    buf = io.BytesIO()
    save_with_infotext(Image.new("RGB", (16, 16), (200, 30, 30)), buf, text, format=fmt)
    return buf.getvalue()


def test_png_latin1_text_is_a_tEXt_parameters_chunk():
    chunks = dict(_png_chunks(_save("PNG", TEXT)))
    assert chunks[b"tEXt"] == b"parameters\x00" + TEXT.encode("latin-1")


def test_png_non_latin1_text_is_an_iTXt_chunk():
    chunks = dict(_png_chunks(_save("PNG", UNICODE_TEXT)))
    assert b"tEXt" not in chunks
    key, rest = chunks[b"iTXt"].split(b"\x00", 1)
    assert key == b"parameters"
    compressed, method = rest[0], rest[1]
    lang, translated, body = rest[2:].split(b"\x00", 2)
    body = zlib.decompress(body) if compressed else body
    assert (method, lang, translated) == (0, b"", b"") and body.decode("utf-8") == UNICODE_TEXT


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("text", [TEXT, UNICODE_TEXT])
def test_round_trip(fmt, text):
    data = _save(fmt, text)
    assert read_infotext(data) == text
    assert Image.open(io.BytesIO(data)).format == fmt


def _exif_user_comment_entry(exif: bytes) -> tuple[int, bytes]:
    """An independent TIFF walk: (type, value bytes) of tag 0x9286 in the Exif IFD."""
    assert exif[:6] == b"Exif\x00\x00"
    tiff = exif[6:]
    e = {b"MM": ">", b"II": "<"}[tiff[:2]]
    (ifd0,) = struct.unpack(e + "I", tiff[4:8])

    def entries(offset):
        (n,) = struct.unpack(e + "H", tiff[offset : offset + 2])
        for i in range(n):
            yield struct.unpack(e + "HHI4s", tiff[offset + 2 + 12 * i : offset + 14 + 12 * i])

    exif_ifd = next(struct.unpack(e + "I", v)[0] for tag, _, _, v in entries(ifd0) if tag == 0x8769)
    for tag, typ, count, value in entries(exif_ifd):
        if tag == 0x9286:
            data = value[:count] if count <= 4 else tiff[struct.unpack(e + "I", value)[0] :][:count]
            return typ, data
    raise AssertionError("no UserComment")


def test_exif_block_is_what_piexif_writes():
    typ, data = _exif_user_comment_entry(exif_with_user_comment(UNICODE_TEXT))
    assert typ == 7  # UNDEFINED, as piexif's UserComment
    assert data == b"UNICODE\x00" + UNICODE_TEXT.encode("utf_16_be") == user_comment(UNICODE_TEXT)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_saved_jpeg_and_webp_carry_the_exif_user_comment(fmt):
    exif = Image.open(io.BytesIO(_save(fmt, TEXT))).info["exif"]
    exif = exif if exif.startswith(b"Exif") else b"Exif\x00\x00" + exif
    typ, data = _exif_user_comment_entry(exif)
    assert typ == 7 and data == user_comment(TEXT)


def test_decode_user_comment_variants():
    assert decode_user_comment(b"UNICODE\x00" + "héllo 東京".encode("utf_16_be")) == "héllo 東京"
    assert decode_user_comment(b"UNICODE\x00" + "héllo, world".encode("utf_16_le")) == "héllo, world"
    assert decode_user_comment(b"ASCII\x00\x00\x00plain\x00") == "plain"
    assert decode_user_comment("no prefix, utf8 é".encode()) == "no prefix, utf8 é"


def test_png_parameters_win_over_exif():
    buf = io.BytesIO()
    info = PngInfo()
    info.add_text("parameters", "from png")
    Image.new("RGB", (4, 4)).save(buf, "PNG", pnginfo=info, exif=exif_with_user_comment("from exif"))
    assert read_infotext(buf.getvalue()) == "from png"


def test_png_with_only_exif_is_read():
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG", exif=exif_with_user_comment("from exif"))
    assert read_infotext(buf.getvalue()) == "from exif"


def test_no_infotext_and_not_an_image(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")
    assert read_infotext(buf.getvalue()) is None
    bad = tmp_path / "x.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(FormatError, match="x.png"):
        read_infotext(bad)


def test_format_from_suffix_and_unsupported(tmp_path):
    path = tmp_path / "a.webp"
    save_with_infotext(Image.new("RGB", (4, 4)), path, TEXT)
    assert Image.open(path).format == "WEBP" and read_infotext(path) == TEXT
    with pytest.raises(FormatError, match="BMP"):
        save_with_infotext(Image.new("RGB", (4, 4)), tmp_path / "a.bmp", TEXT)


def test_too_long_for_jpeg_exif_is_an_error_not_a_cut():
    with pytest.raises(FormatError, match="too long for JPEG"):
        _save("JPEG", "x" * 40000)
    assert read_infotext(_save("PNG", "x" * 40000)) == "x" * 40000


def test_request_from_png(tmp_path):
    path = tmp_path / "a.png"
    text = TEXT.replace("Size: 16x16", "Size: 64x32, Model: mymodel, Clip skip: 2")
    save_with_infotext(Image.new("RGB", (4, 4)), path, text)
    r = request_from_png(path)
    assert r.prompt == "a castle <lora:ghibli:0.7>" and r.negative_prompt == "blurry"
    assert (r.steps, r.sampler, r.scheduler, r.cfg_scale, r.seed) == (20, "DPM++ 2M", "Karras", 7.0, 42)
    assert (r.width, r.height, r.clip_skip, r.checkpoint) == (64, 32, 2, "mymodel")
