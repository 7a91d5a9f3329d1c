"""`kill -9` of a `loradeck generate` process at random points (issue 18): no truncated picture is ever left under a
numbered name, every picture that is there is whole and equals the clean run's, and the next job draws exactly what a
clean run draws."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SRC = Path(__file__).resolve().parents[1] / "src"
PROMPT = "a red circle on a blue background, stripy <lora:stripy:0.8>"
COUNT = 4

pytestmark = pytest.mark.slow


def _command(out: Path) -> list[str]:
    return [sys.executable, "-m", "loradeck", "generate", PROMPT, "--seed", "1", "--steps", "30",
            "--batch-count", str(COUNT), "--out", str(out)]  # fmt: skip


def _env(home: Path) -> dict[str, str]:
    # One thread in every run, so a resumed or repeated job can be compared bit for bit.
    return {**os.environ, "PYTHONPATH": str(SRC), "LORADECK_HOME": str(home), "OMP_NUM_THREADS": "1"}


def _pictures(out: Path) -> dict[str, np.ndarray]:
    """Pixels by seed of every visible PNG; a PNG that does not decode whole fails the test."""
    found = {}
    for path in sorted(out.rglob("*.png")):
        with Image.open(path) as im:
            im.load()  # raises on a truncated file
            assert im.info.get("parameters", "").startswith("a red circle"), path
            found.setdefault(path.stem.split("-", 1)[1], []).append(np.asarray(im.convert("RGB")))
    return found


def test_kill_9_during_generation_leaves_whole_pictures_and_the_next_job_is_clean(tmp_path):
    home = tmp_path / "home"
    clean = subprocess.run(_command(tmp_path / "clean"), env=_env(home), capture_output=True, timeout=300)
    assert clean.returncode == 0, clean.stderr.decode()[-2000:]
    reference = {seed: images[0] for seed, images in _pictures(tmp_path / "clean").items()}
    assert len(reference) == COUNT

    out = tmp_path / "killed"
    rng = random.Random(18)
    # First kill: somewhere in start-up or the first picture; second: after at least two pictures were written.
    for wait_for_pictures, extra in ((0, rng.uniform(2.0, 6.0)), (2, rng.uniform(0.0, 0.6))):
        before = len(list(out.rglob("*.png")))
        proc = subprocess.Popen(_command(out), env=_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list(out.rglob("*.png"))) - before >= wait_for_pictures:
                break
            time.sleep(0.02)
        time.sleep(extra)
        assert proc.poll() is None, "the job finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        for seed, images in _pictures(out).items():  # whatever is visible is whole and right
            for image in images:
                assert np.array_equal(image, reference[seed]), seed

    visible_before = len(list(out.rglob("*.png")))
    assert visible_before < 2 * COUNT  # both runs really were cut short
    done = subprocess.run(_command(out), env=_env(home), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    after = _pictures(out)
    assert sum(len(v) for v in after.values()) == visible_before + COUNT
    for seed, images in after.items():
        for image in images:
            assert np.array_equal(image, reference[seed]), seed
    # Only whole pictures under visible names; a kill mid-write can leave only a hidden ``.*.png.part``.
    assert all(p.suffix == ".png" for p in out.rglob("*") if p.is_file() and not p.name.startswith("."))
