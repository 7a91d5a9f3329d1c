"""Pictures in and out of the API: base64 (plain or data URL) to PIL and back, and A1111's img2img resize modes."""

from __future__ import annotations

import base64
import binascii
import io

from PIL import Image, UnidentifiedImageError

from loradeck.errors import InvalidRequest
from loradeck.prompt.pnginfo import png_info

RESIZE_MODES = {0: "just resize", 1: "crop and resize", 2: "resize and fill", 3: "just resize (latent upscale)"}


def decode_image(data: str, what: str = "the image") -> Image.Image:
    """A picture from base64, with or without a ``data:image/...;base64,`` prefix (A1111 accepts both)."""
    if not isinstance(data, str) or not data.strip():
        raise InvalidRequest(f"{what[:1].upper()}{what[1:]} is empty; send a base64 PNG or JPEG.")
    text = data.strip()
    if text.startswith("data:"):
        text = text.partition(",")[2]
    if text.startswith(("http://", "https://")):
        raise InvalidRequest(f"{what[:1].upper()}{what[1:]} is a URL; loradeck only accepts base64 pictures.")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=False)
        image = Image.open(io.BytesIO(raw))  # reads the header only: the size is known before any pixel is decoded
        _check_pixels(image, what)
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # Pillow's own (warnings as errors)
        raise InvalidRequest(f"{what[:1].upper()}{what[1:]} is refused as a decompression bomb ({exc}).") from None
    except (binascii.Error, ValueError, OSError, UnidentifiedImageError) as exc:  # incl. text chunks over Pillow's cap
        raise InvalidRequest(f"{what[:1].upper()}{what[1:]} is not a readable base64 picture ({exc}).") from None
    return image


def _check_pixels(image: Image.Image, what: str) -> None:
    """Refuse a picture over Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``, about 89 million pixels)
    before decoding it: a few kilobytes of PNG can otherwise ask for gigabytes. Pillow only warns between one and two
    times its limit; the API refuses from the limit on."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit and image.width * image.height > limit:
        raise InvalidRequest(
            f"{what[:1].upper()}{what[1:]} is {image.width}x{image.height} pixels, over the limit of {limit} pixels "
            f"(Pillow's decompression-bomb guard)."
        )


def encode_png(image: Image.Image, infotext: str | None = None) -> str:
    """Base64 PNG without prefix, with the infotext in its ``parameters`` chunk (what A1111 returns)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=png_info(infotext) if infotext else None)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def fit_init_image(image: Image.Image, width: int, height: int, mode: int) -> Image.Image:
    """The init image brought to ``width``×``height`` as A1111's resize modes do (3, latent upscale, = 0 here)."""
    if mode not in RESIZE_MODES:
        raise InvalidRequest(f"resize_mode must be one of {sorted(RESIZE_MODES)} ({', '.join(RESIZE_MODES.values())}).")
    image = image.convert("RGB")
    if mode in (0, 3):
        return image.resize((width, height), Image.Resampling.LANCZOS)
    ratio, src_ratio = width / height, image.width / image.height
    if mode == 1:  # scale to cover, then centre-crop
        w, h = (width, round(width / src_ratio)) if ratio > src_ratio else (round(height * src_ratio), height)
        resized = image.resize((max(1, w), max(1, h)), Image.Resampling.LANCZOS)
        left, top = (resized.width - width) // 2, (resized.height - height) // 2
        return resized.crop((left, top, left + width, top + height))
    # mode 2: scale to fit, then fill the bars by stretching the picture's edge rows/columns (A1111's fill)
    w, h = (round(height * src_ratio), height) if ratio > src_ratio else (width, round(width / src_ratio))
    resized = image.resize((max(1, w), max(1, h)), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(resized.resize((width, height), Image.Resampling.LANCZOS))  # background: the stretched picture
    canvas.paste(resized, ((width - resized.width) // 2, (height - resized.height) // 2))
    return canvas
