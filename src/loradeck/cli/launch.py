"""`loradeck train --num-processes N`: run the same training in N processes, as torchrun would.

Each process is ``loradeck train --config <the settings>`` with torchrun's environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR/PORT); accelerate reads it and sets up DDP (NCCL on GPUs, gloo on CPUs), and the training
loop gives each process its slice of every global batch (``train/dataset.py``). Process 0 owns this terminal (its
progress bar, its output lines) and writes the files; the others log to a file shown if they fail. When one fails
the others are stopped, so nobody waits for it forever.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loradeck.errors import LoradeckError


def toml_text(values: dict[str, Any]) -> str:
    """Flat TOML for the plain values of ``TrainConfig.to_dict`` (text, numbers, booleans, lists of text)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, float):
            return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))  # JSON's string escapes are TOML's basic-string escapes

    return "".join(f"{key} = {value(v)}\n" for key, v in values.items())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_training(settings: dict[str, Any], processes: int) -> None:
    """Run ``loradeck train`` with ``settings`` in ``processes`` processes; raise when one of them fails."""
    folder = Path(tempfile.mkdtemp(prefix="loradeck-train-"))
    config = folder / "train.toml"
    config.write_text(toml_text(settings), encoding="utf-8")
    port = _free_port()
    threads = str(max(1, (os.cpu_count() or 1) // processes))
    children: list[subprocess.Popen] = []
    logs = [folder / f"process{rank}.log" for rank in range(processes)]
    for rank in range(processes):
        env = {
            **os.environ,
            "WORLD_SIZE": str(processes), "RANK": str(rank), "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(processes), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
        }  # fmt: skip
        env.setdefault("OMP_NUM_THREADS", threads)  # accelerate would set 1 (and warn); share the cores instead
        out = None if rank == 0 else subprocess.DEVNULL
        err = None if rank == 0 else logs[rank].open("wb")
        command = [sys.executable, "-m", "loradeck", "train", "--config", str(config)]
        children.append(subprocess.Popen(command, env=env, stdout=out, stderr=err))
    try:
        failed = _wait(children)
    except KeyboardInterrupt:  # the terminal sent Ctrl-C to every process: let them stop together, then go
        _stop(children, grace=30)
        raise
    if failed is None:
        return
    rank, code = failed
    _stop(children, grace=5)
    if rank == 0:  # its own error line is already on this terminal
        raise SystemExit(code)
    raise LoradeckError(
        f"Training process {rank} of {processes} failed (exit {code}): {_last_line(logs[rank])} "
        f"(its log: {logs[rank]})."
    )


def _wait(children: list[subprocess.Popen]) -> tuple[int, int] | None:
    """Until all end; the first (rank, exit code) that failed, else None."""
    while True:
        codes = [child.poll() for child in children]
        for rank, code in enumerate(codes):
            if code not in (None, 0):
                return rank, code
        if all(code == 0 for code in codes):
            return None
        time.sleep(0.2)


def _stop(children: list[subprocess.Popen], grace: float) -> None:
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.terminate()
    for child in children:
        try:
            child.wait(5)
        except subprocess.TimeoutExpired:
            child.kill()


def _last_line(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "no output"
