"""20 concurrent txt2img requests over 4 LoRA stacks: all succeed, each picture equals the same request run alone."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

from tests.server.helpers import b64_to_array

STACKS = [
    "<lora:red:1>",
    "<lora:blue:0.8> <lora:green:0.5>",
    "<lora:shiny:1>",
    "",  # no LoRA at all
]


def _body(i: int) -> dict:
    return {
        "prompt": f"a red circle on a blue background {STACKS[i % 4]}",
        "seed": 100 + i,
        "steps": 3,
        "width": 32,
        "height": 32,
        "sampler_name": "Euler a",
    }


def _switches(keys) -> int:
    return sum(1 for a, b in zip(keys, keys[1:], strict=False) if a != b)


def test_concurrent_requests_match_solo_runs(served):
    url = f"{served['url']}/sdapi/v1/txt2img"
    queue = served["app"].state.loradeck.queue
    assert queue.wait_idle(120)
    t0 = time.time()
    with httpx.Client(timeout=300) as http, ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda i: http.post(url, json=_body(i)), range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    together = [b64_to_array(r.json()["images"][0]) for r in responses]

    batch = sorted((j for j in queue.jobs() if j.kind == "txt2img" and j.queued_at >= t0), key=lambda j: j.seq)
    assert len(batch) == 20
    run_order = sorted(batch, key=lambda j: queue.order.index(j.id))
    arrival_switches = _switches([j.key for j in batch])
    made = _switches([j.key for j in run_order])
    print(f"\nstack switches: {made} for 20 jobs over 4 stacks (FIFO in arrival order: {arrival_switches})")
    assert made <= arrival_switches
    assert max(j.passed for j in batch) <= queue.fairness

    with httpx.Client(timeout=300) as http:  # the same requests, one at a time
        for i in range(20):
            alone = http.post(url, json=_body(i))
            assert alone.status_code == 200
            assert np.array_equal(b64_to_array(alone.json()["images"][0]), together[i]), f"request {i} differs"
