"""Scale-out routing on Ray Serve: loradeck's stack-affinity routing vs Ray's default power-of-two routing, same
cluster, same replicas, same run.

    python bench/ray_affinity.py [--size full|reduced] [--side 64] [--steps 4] [--requests 40] [--stacks 4]
                                 [--concurrency 40] [--rounds 1] [--replicas 2] [--rank 32]

A local Ray cluster (2 CPUs) runs loradeck with ``--replicas`` replicas (fractional CPUs, one torch thread each, as
Ray sets OMP_NUM_THREADS) on a random-weight SD1.5-architecture checkpoint (``--size full``: the real SD1.5 sizes,
860M U-Net; ``reduced``: the tests' narrow one) and ``--stacks`` kohya LoRAs of rank ``--rank`` over every module
(fp16 files, as trainers write them), so a switch costs what it costs on a real model. The trace: ``--requests``
txt2img requests, request i on stack i mod stacks (each stack one LoRA at 0.8 plus the next at 0.4), sent
``--concurrency`` at a time. Each round sends the trace once with loradeck's routing and once with Ray's
(``X-Loradeck-Routing: ray``: Ray Serve's power of two choices over the replicas holding the checkpoint, its
multiplexed model id), alternating which goes first. A warm-up before (Ray's routing, every stack several times)
loads the checkpoint and reads the LoRA files on every replica.

Prints one JSON object per figure per line; ``ratio`` = ours / baseline (images per minute: above 1, ours is
faster; switches: below 1, ours merges less). LoRA switches are counted by the replicas' queues (a job whose stack
differs from the previous one's).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import torch
from safetensors.torch import save_file
from tests.helpers.checkpoints import FAMILY_OF, build_components, model_configs, write_tokenizer

from loradeck.families import Family
from loradeck.formats.ldm_keys import to_ldm
from loradeck.lora import keymap_for_family

BENCH = "ray_affinity"
CHECKPOINT = "sdrandom"


def emit(figure: str, ours: float, baseline: float, unit: str) -> None:
    print(
        json.dumps(
            {
                "bench": BENCH,
                "figure": figure,
                "ours": round(ours, 3),
                "baseline": round(baseline, 3),
                "baseline_name": "Ray Serve's default routing (power of two choices, multiplexed checkpoint id), "
                "same cluster and replicas",
                "ratio": round(ours / baseline, 3) if baseline else None,
                "unit": unit,
            }
        ),
        flush=True,
    )


def write_model_and_loras(home: Path, size: str, stacks: int, rank: int) -> None:
    """An SD1.5-architecture random checkpoint (fp16 file) and ``stacks`` rank-``rank`` LoRAs over all its modules."""
    components = build_components("sd15", model_configs("sd15", reduced=size == "reduced"), seed=0, dtype=torch.float16)
    models = home / "models" / "Stable-diffusion"
    models.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in to_ldm(components, FAMILY_OF["sd15"]).items()}
    save_file(state, str(models / f"{CHECKPOINT}.safetensors"))
    del state
    by_component = {"unet": components["unet"], "te1": components["text_encoder"]}
    loras = home / "models" / "Lora"
    loras.mkdir(parents=True)
    for k in range(stacks):
        g = torch.Generator().manual_seed(100 + k)
        tensors = {}
        for name, ref in keymap_for_family(Family.SD1).modules.items():
            weight = by_component[ref.component].get(ref.path + ".weight")
            if weight is None:  # --size reduced: 2 text-encoder layers of 12
                continue
            shape = weight.shape
            tail = (1, 1) if len(shape) == 4 else ()
            tensors[f"{name}.lora_down.weight"] = (torch.randn(rank, shape[1], *tail, generator=g) * 0.05).half()
            tensors[f"{name}.lora_up.weight"] = (torch.randn(shape[0], rank, *tail, generator=g) * 0.05).half()
            tensors[f"{name}.alpha"] = torch.tensor(float(rank) / 2, dtype=torch.float16)
        save_file(tensors, str(loras / f"s{k}.safetensors"), metadata={"ss_network_dim": str(rank)})


def trace(requests: int, stacks: int, side: int, steps: int) -> list[dict]:
    return [
        {
            "prompt": f"a red circle on a blue background <lora:s{i % stacks}:0.8> <lora:s{(i + 1) % stacks}:0.4>",
            "seed": i,
            "steps": steps,
            "width": side,
            "height": side,
            "sampler_name": "Euler",
            "override_settings": {"sd_model_checkpoint": CHECKPOINT},
        }
        for i in range(requests)
    ]


def switches(client: httpx.Client) -> int:
    return sum(r["stack_switches"] for r in client.get("/loradeck/v1/cluster").json()["replicas"])


def run_trace(client: httpx.Client, bodies: list[dict], routing: str, concurrency: int) -> tuple[float, int, dict]:
    """Seconds for the whole trace, the switches it caused, and how many requests each replica served."""
    before = switches(client)
    headers = {"x-loradeck-routing": routing}
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        answers = list(pool.map(lambda b: client.post("/sdapi/v1/txt2img", json=b, headers=headers), bodies))
    seconds = time.perf_counter() - start
    bad = [(a.status_code, a.text[:200]) for a in answers if a.status_code != 200]
    if bad:
        raise SystemExit(f"{len(bad)} requests failed: {bad[:2]}")
    served: dict[str, int] = {}
    for a in answers:
        served[a.headers["x-loradeck-replica"]] = served.get(a.headers["x-loradeck-replica"], 0) + 1
    return seconds, switches(client) - before, served


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=["full", "reduced"], default="full")
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--stacks", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--rank", type=int, default=32)
    args = parser.parse_args()

    import ray
    from ray import serve

    from loradeck.ray.deploy import ClusterOptions, build_app
    from loradeck.settings import load_settings

    home = Path(tempfile.mkdtemp(prefix="loradeck-raybench-"))
    t0 = time.perf_counter()
    write_model_and_loras(home, args.size, args.stacks, args.rank)
    settings = load_settings(home=home, tokenizer_dir=write_tokenizer(home / "tokenizer"))
    built = time.perf_counter() - t0
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        share = round((2 - 0.1) / args.replicas - 0.005, 2)
        options = ClusterOptions(
            replicas=args.replicas, num_cpus_per_replica=share, ingress_cpus=0.1, routing_header=True, preload=False
        )
        serve.run(build_app(settings, options), name="loradeck", route_prefix="/")
        bodies = trace(args.requests, args.stacks, args.side, args.steps)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=3600) as client:
            t1 = time.perf_counter()
            warm = trace(args.stacks * 2 * args.replicas, args.stacks, args.side, 1)
            run_trace(client, warm, "ray", concurrency=len(warm))
            warmup = time.perf_counter() - t1
            results: dict[str, list] = {"stack": [], "ray": []}
            for r in range(args.rounds):
                for routing in ("stack", "ray") if r % 2 == 0 else ("ray", "stack"):
                    results[routing].append(run_trace(client, bodies, routing, args.concurrency))
    finally:
        serve.shutdown()
        ray.shutdown()
    ipm = {k: 60 * args.requests * len(v) / sum(s for s, _, _ in v) for k, v in results.items()}
    sw = {k: sum(n for _, n, _ in v) / len(v) for k, v in results.items()}
    emit("images_per_minute", ipm["stack"], ipm["ray"], "img/min")
    emit("lora_switches", sw["stack"], sw["ray"], "switches")
    config = {
        "bench": BENCH, "figure": "config", **vars(args), "cpus": 2, "torch_threads_per_replica": 1,
        "seconds_build": round(built, 1), "seconds_warmup": round(warmup, 1),
        "seconds": {k: [round(s, 2) for s, _, _ in v] for k, v in results.items()},
        "switches": {k: [n for _, n, _ in v] for k, v in results.items()},
        "served_by_replica": {k: [sorted(c.values()) for _, _, c in v] for k, v in results.items()},
    }  # fmt: skip
    print(json.dumps(config), file=sys.stderr)


if __name__ == "__main__":
    main()
