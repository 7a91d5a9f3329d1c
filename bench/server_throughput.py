"""Server throughput on a mixed-LoRA workload: the LoRA-affinity queue versus plain FIFO, same run, same studio.

    taskset -c 1 python bench/server_throughput.py [--requests 32] [--stacks 4] [--steps 2] [--rank 32] [--rounds 2]

Each round fires ``--requests`` txt2img requests at once over HTTP (uvicorn on 127.0.0.1) at a server whose queue
uses affinity (fairness 4), then the same requests at a server over the same Studio whose queue is FIFO. The requests
cycle through ``--stacks`` LoRA stacks (request i uses stack i mod stacks: FIFO's worst case, every job a switch).
The LoRAs cover every module of the embedded demo model (rank ``--rank``); pictures are 32×32, so the share of time
spent merging and restoring LoRAs is what the queue policy can save.

Prints one JSON object per figure per line; ``ratio`` = ours / baseline (images per minute: above 1, ours is faster;
switches: below 1, ours switches less).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from loradeck.demo.paths import demo_model_dir
from loradeck.families import Family
from loradeck.lora import keymap_for_family
from loradeck.server import create_app
from loradeck.services.studio import Studio

FILES = {"unet": "unet/diffusion_pytorch_model.safetensors", "te1": "text_encoder/model.safetensors"}


def write_lora(path: Path, seed: int, rank: int) -> None:
    """A kohya LoRA over every module of the demo model (names from the demo keymap, shapes from its weights)."""
    rng = np.random.default_rng(seed)
    handles = {c: safe_open(demo_model_dir() / f, "np") for c, f in FILES.items()}
    tensors = {}
    for name, ref in keymap_for_family(Family.DEMO).modules.items():
        shape = handles[ref.component].get_slice(ref.path + ".weight").get_shape()
        tail = list(shape[2:])
        tensors[f"{name}.lora_down.weight"] = (rng.standard_normal([rank, shape[1], *tail]) * 0.05).astype(np.float32)
        tensors[f"{name}.lora_up.weight"] = (rng.standard_normal([shape[0], rank] + [1] * len(tail)) * 0.05).astype(
            np.float32
        )
        tensors[f"{name}.alpha"] = np.array(float(rank), np.float32)
    save_file(tensors, str(path))


class Served:
    """uvicorn on a free 127.0.0.1 port in a thread."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def stack_prompt(i: int, stacks: int) -> str:
    k = i % stacks
    return f"a red circle on a blue background <lora:s{k}:0.8> <lora:s{(k + 1) % stacks}:0.4>"


def run_round(studio: Studio, *, affinity: bool, requests: int, stacks: int, steps: int) -> tuple[float, int]:
    """Seconds for all requests and the number of stack switches the queue made."""
    app = create_app(studio, affinity=affinity, fairness=4 if affinity else 0)
    queue = studio.queue.start()  # the studio's one device queue (it outlives each round's app)
    switches_before = queue.switches
    bodies = [
        {
            "prompt": stack_prompt(i, stacks),
            "seed": i,
            "steps": steps,
            "width": 32,
            "height": 32,
            "sampler_name": "Euler",
        }
        for i in range(requests)
    ]
    with Served(app) as served, httpx.Client(timeout=600) as http, ThreadPoolExecutor(requests) as pool:
        url = f"{served.url}/sdapi/v1/txt2img"
        gate = threading.Event()
        queue.submit(lambda job: gate.wait(60), kind="gate")  # hold the worker so every request is queued first
        futures = [pool.submit(http.post, url, json=b) for b in bodies]
        while sum(j.kind == "txt2img" for j in queue.pending()) < requests:
            time.sleep(0.005)
        t0 = time.perf_counter()
        gate.set()
        responses = [f.result() for f in futures]
        seconds = time.perf_counter() - t0
    bad = [r.status_code for r in responses if r.status_code != 200]
    if bad:
        raise SystemExit(f"requests failed: {bad[:3]}")
    return seconds, queue.switches - switches_before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--stacks", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    home = Path(tempfile.mkdtemp(prefix="loradeck-bench-"))
    lora_dir = home / "models" / "Lora"
    lora_dir.mkdir(parents=True)
    for k in range(args.stacks):
        write_lora(lora_dir / f"s{k}.safetensors", seed=k, rank=args.rank)
    studio = Studio(home=home)
    warm = dict(requests=args.stacks, stacks=args.stacks, steps=args.steps)
    run_round(studio, affinity=False, **warm)  # load the model, read and cache every LoRA file
    times = {True: [], False: []}
    switches = {True: [], False: []}
    for _ in range(args.rounds):
        for affinity in (True, False):
            s, n = run_round(studio, affinity=affinity, requests=args.requests, stacks=args.stacks, steps=args.steps)
            times[affinity].append(s)
            switches[affinity].append(n)
    ipm = {a: 60 * args.requests * len(times[a]) / sum(times[a]) for a in times}
    common = {"bench": "server_throughput", "baseline_name": "FIFO queue (same server, same studio)"}
    print(
        json.dumps(
            {
                **common,
                "figure": "images_per_minute",
                "ours": round(ipm[True], 2),
                "baseline": round(ipm[False], 2),
                "ratio": round(ipm[True] / ipm[False], 3),
                "unit": "img/min",
            }
        )
    )
    mean_sw = {a: sum(switches[a]) / len(switches[a]) for a in switches}
    print(
        json.dumps(
            {
                **common,
                "figure": "stack_switches",
                "ours": mean_sw[True],
                "baseline": mean_sw[False],
                "ratio": round(mean_sw[True] / max(mean_sw[False], 1), 3),
                "unit": "switches",
            }
        )
    )
    print(
        json.dumps(
            {
                "bench": "server_throughput",
                "figure": "config",
                "requests": args.requests,
                "stacks": args.stacks,
                "steps": args.steps,
                "rank": args.rank,
                "rounds": args.rounds,
                "seconds_affinity": [round(t, 2) for t in times[True]],
                "seconds_fifo": [round(t, 2) for t in times[False]],
            }
        ),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
