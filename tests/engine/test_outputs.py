"""Pictures are written whole or not at all, under A1111's numbered names, never over another file."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from loradeck.engine import outputs


def _image(v: int) -> Image.Image:
    return Image.fromarray(np.full((8, 8, 3), v, dtype=np.uint8))


def test_a_failure_mid_write_leaves_no_numbered_file(tmp_path, monkeypatch):
    import loradeck.prompt.pnginfo as pnginfo

    def half_then_crash(image, fh, infotext, format):
        fh.write(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
        raise OSError("disk full")

    monkeypatch.setattr(pnginfo, "save_with_infotext", half_then_crash)
    with pytest.raises(OSError):
        outputs.save_png(_image(1), tmp_path, 7, "x")
    assert list(tmp_path.iterdir()) == []  # neither a truncated 00000-7.png nor a leftover part


def test_numbers_follow_the_highest_and_concurrent_writers_never_share_a_name(tmp_path):
    (tmp_path / "00041-3.png").write_bytes(b"not ours")
    paths: list = []
    threads = [
        threading.Thread(target=lambda v=v: paths.append(outputs.save_png(_image(v), tmp_path, 5, f"p{v}")))
        for v in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(int(p.name[:5]) for p in paths) == list(range(42, 50))
    seen = set()
    for p in paths:  # same seed, so the same name was wanted by all: each got its own, with its own picture
        with Image.open(p) as im:
            v = int(np.asarray(im)[0, 0, 0])
            assert im.info["parameters"] == f"p{v}"
            seen.add(v)
    assert seen == set(range(8))
    assert (tmp_path / "00041-3.png").read_bytes() == b"not ours"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert oct((tmp_path / paths[0].name).stat().st_mode & 0o777) == oct(0o666 & ~outputs._UMASK)
