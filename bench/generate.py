"""Wall time of `loradeck generate` against a plain diffusers script doing the same job on the same model.

Both run as fresh processes (imports, model load, 20 steps of Euler a at CFG 7, PNG written), alternately, several
times; the figure is the median. Prints one JSON object per figure per line.

    python bench/generate.py [--runs 5] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

PROMPT = "a red circle on a blue background"

BASELINE = r"""
import sys, torch
from diffusers import StableDiffusionPipeline, EulerAncestralDiscreteScheduler
from loradeck.demo.paths import demo_model_dir
steps, out = int(sys.argv[1]), sys.argv[2]
pipe = StableDiffusionPipeline.from_pretrained(demo_model_dir())
pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
pipe.set_progress_bar_config(disable=True)
image = pipe(sys.argv[3], num_inference_steps=steps, guidance_scale=7.0, height=32, width=32,
             generator=torch.Generator("cpu").manual_seed(1)).images[0]
image.save(out)
"""


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = os.environ | {"LORADECK_HOME": tmp, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        ours_cmd = [
            sys.executable,
            "-m",
            "loradeck",
            "generate",
            PROMPT,
            "--seed",
            "1",
            "--steps",
            str(args.steps),
            "--sampler",
            "Euler a",
            "--cfg",
            "7",
        ]
        base_cmd = [sys.executable, "-c", BASELINE, str(args.steps), os.path.join(tmp, "baseline.png"), PROMPT]
        ours, base = [], []
        timed(ours_cmd, env)  # warm the file cache for both
        for _ in range(args.runs):
            ours.append(timed(ours_cmd, env))
            base.append(timed(base_cmd, env))
    o, b = statistics.median(ours), statistics.median(base)
    print(
        json.dumps(
            {
                "bench": "generate",
                "figure": "wall_s",
                "ours": round(o, 3),
                "baseline": round(b, 3),
                "baseline_name": "diffusers StableDiffusionPipeline script",
                "ratio": round(o / b, 3),
                "unit": "s",
            }
        )
    )


if __name__ == "__main__":
    main()
