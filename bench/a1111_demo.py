"""A client's default request on the demo model: ``POST /sdapi/v1/txt2img`` 512×512, 20 steps (Open WebUI and
SillyTavern send such requests), over HTTP against a real uvicorn server.

    python bench/a1111_demo.py [--rounds 3]

Target: answered in ≤ 30 s on 2 CPU cores with a 512×512 picture. The demo draws at its native size and upscales
(``loradeck.demo.draw_size``), so the figure is compared with the same request at the native size, 32×32: the
ratio is what a 512×512 answer costs over drawing alone (upscale, PNG encoding and transfer of the large picture).
Prints one JSON object per figure per line (seconds, median of the rounds).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import tempfile
import time

import httpx
from PIL import Image
from tests.helpers.servers import running_server

from loradeck.server import create_app
from loradeck.services.studio import Studio


def timed(client: httpx.Client, url: str, side: int, steps: int) -> float:
    body = {"prompt": "a red circle on a blue background", "seed": 1, "width": side, "height": side, "steps": steps}
    start = time.perf_counter()
    response = client.post(f"{url}/sdapi/v1/txt2img", json=body, timeout=600)
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    image = Image.open(io.BytesIO(base64.b64decode(response.json()["images"][0])))
    assert image.size == (side, side), image.size
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    studio = Studio(home=tempfile.mkdtemp())
    studio.load_checkpoint(None)  # before timing: the figure is the request, not the first model load
    with running_server(create_app(studio)) as url, httpx.Client() as client:
        timed(client, url, 32, 2)  # warm-up
        pairs = [(timed(client, url, 512, args.steps), timed(client, url, 32, args.steps)) for _ in range(args.rounds)]
        ours = statistics.median(p[0] for p in pairs)  # alternated, so a change of machine load hits both alike
        base = statistics.median(p[1] for p in pairs)
    print(
        json.dumps(
            {
                "bench": "a1111_demo_default_request",
                "figure": f"txt2img 512x512 {args.steps} steps, demo model, seconds",
                "ours": round(ours, 3),
                "baseline": round(base, 3),
                "baseline_name": f"txt2img 32x32 (native size) {args.steps} steps",
                "ratio": round(ours / base, 3),
                "unit": "s",
            }
        )
    )


if __name__ == "__main__":
    main()
