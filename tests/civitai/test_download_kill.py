"""`kill -9` of a `loradeck civitai download` process (issue 18): nothing where the model belongs, the
``<name>.safetensors.part`` beside it is a true prefix and is never listed as a model, and the next attempt resumes
it with HTTP Range and verifies the SHA256 of the whole file."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from loradeck.civitai import download
from loradeck.library import Library
from tests.civitai.fake_server import lora_bytes

SRC = Path(__file__).resolve().parents[2] / "src"


def test_kill_9_mid_download_then_resume(fake, client, tmp_path):
    home = tmp_path / "home"
    lora_dir, ckpt_dir = home / "models" / "Lora", home / "models" / "Stable-diffusion"
    content = lora_bytes(21)
    entry = fake.add_model("Killed", content)
    fake.trickle[entry.file["id"]] = 0.25  # ~4 s for the whole file: time to kill it in the middle
    env = {**os.environ, "PYTHONPATH": str(SRC), "LORADECK_HOME": str(home)}
    cmd = [sys.executable, "-m", "loradeck", "civitai", "download", str(entry.version["id"])]
    cmd += ["--civitai-url", fake.base_url, "--token", fake.token]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    part = lora_dir / "killed.safetensors.part"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if part.exists() and part.stat().st_size >= 32 * 1024:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the download finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    kept = part.read_bytes()
    assert 0 < len(kept) < len(content) and content.startswith(kept)  # a true prefix, kept for resume
    assert not (lora_dir / "killed.safetensors").exists()  # nothing partial where the model belongs
    library = Library(lora_dir, ckpt_dir, home / "cache")
    report = library.scan()
    assert library.loras() == [] and report.errors == []  # the .part is neither a model nor an unreadable one

    fake.trickle.clear()
    result = download(client, str(entry.version["id"]), lora_dir=lora_dir, checkpoint_dir=ckpt_dir)
    assert result.resumed_from == len(kept) and result.verified
    assert result.path.read_bytes() == content and result.sha256 == hashlib.sha256(content).hexdigest()
    assert fake.seen("storage")[-1].headers["range"] == f"bytes={len(kept)}-"
    assert not part.exists()
    library.scan()
    assert [e.name for e in library.loras()] == ["killed"]  # the verified file, once
