"""Training speed and memory: ``loradeck.train.train_lora`` against a plain diffusers + PEFT loop, same model and data.

One LoRA configuration (rank 8, alpha 8, U-Net transformer blocks + text-encoder attention/MLP, AdamW lr 1e-4,
batch 8, fp32, latents precomputed) on the embedded demo model (or ``--base``) and 16 drawn 32×32 pictures. Each
trainer runs in its own fresh process (so peak RSS is its own), alternately, ``--runs`` times; the figures are
medians. steps/s is measured over the steps after the first ``--warmup`` ones (imports, loading, caching excluded).

    python bench/train_speed.py [--steps 40] [--runs 3] [--base DIR]

Prints one JSON object per figure per line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

COMMON = r"""
import json, random, resource, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from PIL import Image
from loradeck.demo.shapes import random_scene, render
base, steps, warmup, work = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
data = work / "data" / "1_shapes"
data.mkdir(parents=True, exist_ok=True)
rng = random.Random(0)
for i in range(16):
    scene = random_scene(rng)
    Image.fromarray(render(scene)).save(data / f"{i}.png")
    (data / f"{i}.txt").write_text(scene.caption)
stamps = {}
def report():
    rate = (steps - warmup) / (stamps[steps] - stamps[warmup])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"steps_per_s": rate, "peak_rss_mb": rss}))
"""

OURS = (
    COMMON
    + r"""
from loradeck.train import TrainConfig, train_lora
cfg = TrainConfig(data=work / "data", base=base, name="bench", rank=8, alpha=8, lr=1e-4, steps=steps, batch_size=8,
                  device="cpu", output_dir=work / "run", lora_dir=work / "loras", seed=0)
def progress(p):
    if p.phase == "train":
        stamps[p.step] = time.perf_counter()
train_lora(cfg, on_progress=progress)
report()
"""
)

BASELINE = (
    COMMON
    + r"""
import numpy as np
import torch.nn.functional as F
from diffusers import DDPMScheduler, StableDiffusionPipeline
from peft import LoraConfig
pipe = StableDiffusionPipeline.from_pretrained(base, safety_checker=None, requires_safety_checker=False)
unet, te, vae, tok = pipe.unet, pipe.text_encoder, pipe.vae, pipe.tokenizer
for m in (unet, te, vae):
    m.requires_grad_(False)
unet.add_adapter(LoraConfig(r=8, lora_alpha=8, init_lora_weights=True, target_modules=[
    "to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out"]))
te.add_adapter(LoraConfig(r=8, lora_alpha=8, init_lora_weights=True, target_modules=[
    "q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]))
params = [p for m in (unet, te) for p in m.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
sched = DDPMScheduler.from_config(pipe.scheduler.config)
files = sorted(data.glob("*.png"))
with torch.no_grad():
    px = torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 127.5 - 1)
                      .permute(2, 0, 1) for f in files])
    latents = vae.encode(px).latent_dist.mean * vae.config.scaling_factor
captions = [f.with_suffix(".txt").read_text() for f in files]
unet.train(); te.train()
g = torch.Generator().manual_seed(0)
for step in range(steps):
    idx = torch.randperm(len(files), generator=g)[:8]
    lat = latents[idx]
    ids = tok([captions[i] for i in idx], padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="pt").input_ids
    noise = torch.randn(lat.shape, generator=g)
    t = torch.randint(0, sched.config.num_train_timesteps, (lat.shape[0],), generator=g)
    pred = unet(sched.add_noise(lat, noise, t), t, te(ids)[0]).sample
    loss = F.mse_loss(pred, noise)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step(); opt.zero_grad(set_to_none=True)
    stamps[step + 1] = time.perf_counter()
report()
"""
)


def run(code: str, base: str, steps: int, warmup: int) -> dict:
    with tempfile.TemporaryDirectory() as work:
        out = subprocess.run(
            [sys.executable, "-c", code, base, str(steps), str(warmup), work],
            check=True,
            capture_output=True,
            text=True,
            env=os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--base", default=None, help="diffusers folder (default: the embedded demo model)")
    a = ap.parse_args()
    if a.base is None:
        from loradeck.demo.paths import demo_model_dir

        a.base = str(demo_model_dir())
    ours, base = [], []
    for _ in range(a.runs):
        ours.append(run(OURS, a.base, a.steps, a.warmup))
        base.append(run(BASELINE, a.base, a.steps, a.warmup))
    for figure, unit in (("steps_per_s", "steps/s"), ("peak_rss_mb", "MiB")):
        o = statistics.median(r[figure] for r in ours)
        b = statistics.median(r[figure] for r in base)
        print(json.dumps({
            "bench": "train_speed",
            "figure": f"{figure} (demo model, rank 8, batch 8, {a.steps} steps, CPU 1 thread)",
            "ours": round(o, 3),
            "baseline": round(b, 3),
            "baseline_name": "diffusers + PEFT training loop",
            "ratio": round(o / b, 3),
            "unit": unit,
        }))  # fmt: skip


if __name__ == "__main__":
    main()
