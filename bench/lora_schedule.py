"""Scheduled LoRA cost: one U-Net step with a scheduled rank-32 LoRA (forward-time sidecar) vs the same LoRA merged.

    taskset -c 1 python bench/lora_schedule.py [--quick]

Random-weight SD1.5 U-Net (shipped config), a kohya rank-32 LoRA over its 192 attention modules (the kohya default
set of the U-Net), batch 2 (CFG) at a 64×64 latent (512 px); --quick uses a 32×32 latent. The merged figure is the
baseline (a merged LoRA costs what no LoRA costs); target ratio ≤ 1.25. One JSON object per figure per line.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib import resources

import torch
from diffusers import UNet2DConditionModel

from loradeck.families import Family
from loradeck.lora import LoraPatcher, StackEntry, keymap_for_family
from loradeck.lora.formats import parse_state_dict
from loradeck.lora.sidecar import LoraSidecar, ScheduledLora

BENCH = "lora_schedule"


def emit(figure, ours, baseline, baseline_name, unit="s"):
    print(
        json.dumps(
            dict(
                bench=BENCH,
                figure=figure,
                ours=round(ours, 4),
                baseline=round(baseline, 4),
                baseline_name=baseline_name,
                ratio=round(ours / baseline, 3),
                unit=unit,
            )
        ),
        flush=True,
    )


def best_of(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = json.loads((resources.files("loradeck") / "configs" / "sd15" / "unet" / "config.json").read_text())
    unet = UNet2DConditionModel.from_config({k: v for k, v in cfg.items() if not k.startswith("_")}).eval()
    keymap = keymap_for_family(Family.SD1)
    g = torch.Generator().manual_seed(1)
    tensors = {}
    for name, ref in keymap.modules.items():
        if ref.component != "unet":
            continue
        w = unet.get_submodule(ref.path).weight
        shape_in = (32, *w.shape[1:]) if w.dim() == 4 else (32, w.shape[1])
        shape_out = (w.shape[0], 32, 1, 1) if w.dim() == 4 else (w.shape[0], 32)
        tensors[f"{name}.lora_down.weight"] = torch.randn(shape_in, generator=g) * 0.01
        tensors[f"{name}.lora_up.weight"] = torch.randn(shape_out, generator=g) * 0.01
        tensors[f"{name}.alpha"] = torch.tensor(16.0)
    from pathlib import Path

    lora = parse_state_dict(Path("bench.safetensors"), tensors, {})
    side = 32 if args.quick else 64
    x = torch.randn(2, 4, side, side, generator=g)
    t = torch.tensor([500, 500])
    ctx = torch.randn(2, 77, 768, generator=g)

    def step():
        with torch.inference_mode():
            unet(x, t, ctx)

    step()  # warm-up
    patcher = LoraPatcher({"unet": unet}, keymap)
    patcher.apply([StackEntry(lora, te=0.0, unet=0.8)])
    step()
    merged = best_of(step, args.repeats)
    patcher.restore()
    sidecar = LoraSidecar(unet, keymap, [ScheduledLora(lora, lambda i, n: 0.8)])
    sidecar.set_step(0, 1)
    step()
    scheduled = best_of(step, args.repeats)
    sidecar.remove()
    emit(f"unet_step_scheduled_rank32_{side}x{side}_latent", scheduled, merged, "same LoRA merged (= no LoRA)")


if __name__ == "__main__":
    main()
