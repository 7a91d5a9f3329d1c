"""The labelled X/Y/Z grid picture, in A1111's layout: column labels on top, row labels on the left, one X×Y sub-grid
per Z value side by side under its Z label. Tiny cells (the demo model's 32 px) are enlarged with nearest-neighbour in
the grid only, so the labels stay readable; the cells' own PNGs keep their real size."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

MIN_CELL = 128  # grid cells are shown at least this wide


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def _label(text: str, width: int, height: int, size: int) -> Image.Image:
    box = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(box)
    font = _font(size)
    lines = _wrap(draw, text, font, width - 8)
    step = size + 4
    top = max(0, (height - step * len(lines)) // 2)
    for i, line in enumerate(lines):
        w = draw.textlength(line, font=font)
        draw.text(((width - w) / 2, top + i * step), line, fill="black", font=font)
    return box


def draw_grid(cells: list[Image.Image], x_labels: list[str], y_labels: list[str], z_labels: list[str]) -> Image.Image:
    """``cells`` in x-fastest order (index = ix + iy·nx + iz·nx·ny); labels may be [""] for an unused axis."""
    nx, ny, nz = len(x_labels), len(y_labels), len(z_labels)
    w0, h0 = cells[0].size
    scale = max(1, -(-MIN_CELL // w0))
    cw, ch = w0 * scale, h0 * scale
    size = max(12, cw // 10)
    top = size * 3 if any(x_labels) else 0
    left = cw if any(y_labels) else 0
    title = size * 3 if any(z_labels) else 0
    sub_w, sub_h = left + nx * cw, top + ny * ch
    grid = Image.new("RGB", (nz * sub_w, title + sub_h), "white")
    for iz in range(nz):
        x0 = iz * sub_w
        if title:
            grid.paste(_label(z_labels[iz], sub_w, title, size), (x0, 0))
        for ix in range(nx):
            if top:
                grid.paste(_label(x_labels[ix], cw, top, size), (x0 + left + ix * cw, title))
        for iy in range(ny):
            if left:
                grid.paste(_label(y_labels[iy], left, ch, size), (x0, title + top + iy * ch))
            for ix in range(nx):
                cell = cells[ix + iy * nx + iz * nx * ny].convert("RGB")
                if scale > 1:
                    cell = cell.resize((cw, ch), Image.Resampling.NEAREST)
                grid.paste(cell, (x0 + left + ix * cw, title + top + iy * ch))
    return grid
