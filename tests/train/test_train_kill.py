"""`kill -9` of a `loradeck train` process at random points (issue 18): nothing is ever left where the LoRA belongs,
and `--resume` ends with weights bit-identical to an uninterrupted run's — even when a kill lands during a save."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SRC = Path(__file__).resolve().parents[2] / "src"
STEPS, SAVE_EVERY = 36, 3

pytestmark = pytest.mark.slow


def _command(data: Path, base: Path, run: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "loradeck", "train", "--data", str(data), "--base", str(base), "--name", "killed",
            "--trigger", "stripy", "--rank", "4", "--alpha", "2", "--lr", "1e-2", "--steps", str(STEPS),
            "--batch-size", "2", "--seed", "3", "--device", "cpu", "--save-every", str(SAVE_EVERY),
            "--save-precision", "float", "--output-dir", str(run / "out"), "--lora-dir", str(run / "loras"),
            *extra]  # fmt: skip


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC), "LORADECK_HOME": str(home), "OMP_NUM_THREADS": "1"}


def _saved_step(run: Path) -> int:
    try:
        return json.loads((run / "out" / "state" / "train_state.json").read_text())["current_step"]
    except (OSError, ValueError, KeyError):
        return 0


def test_kill_9_during_training_then_resume_is_bit_identical(shapes_data, demo_base, tmp_path):
    home = tmp_path / "home"
    ref = subprocess.run(_command(shapes_data, demo_base, tmp_path / "ref"), env=_env(home), capture_output=True,
                         timeout=600)  # fmt: skip
    assert ref.returncode == 0, ref.stderr.decode()[-2000:]
    reference = load_file(tmp_path / "ref" / "loras" / "killed.safetensors")

    run, rng = tmp_path / "cut", random.Random(18)
    lora = run / "loras" / "killed.safetensors"
    # Each kill waits for a later saved state, then a random moment: mid-step, mid-save or between the two renames.
    for wait_for_step in (SAVE_EVERY, 4 * SAVE_EVERY, 8 * SAVE_EVERY):
        extra = ("--resume",) if wait_for_step > SAVE_EVERY else ()
        proc = subprocess.Popen(_command(shapes_data, demo_base, run, *extra), env=_env(home),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None and _saved_step(run) < wait_for_step:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        visible = [p.name for p in lora.parent.glob("*") if not p.name.startswith(".")] if lora.parent.exists() else []
        assert visible == []  # nothing partial (or early) where the LoRA belongs; a hidden temp file at most

    done = subprocess.run(_command(shapes_data, demo_base, run, "--resume"), env=_env(home), capture_output=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    resumed = load_file(lora)
    assert resumed.keys() == reference.keys()
    for k in reference:
        assert torch.equal(resumed[k], reference[k]), k
