"""Soak: 500 random LoRA stack switches on an SD1.5-size model, RSS sampled after every switch (issue 18).

    taskset -c 1 python bench/soak_switches.py [--switches 500] [--loras 6] [--warmup 50]

Random-weight SD1.5 U-Net + CLIP-L text encoder (the shipped configs, fp32, CPU), ``--loras`` kohya rank-32 LoRAs over
all 264 modules (fp16 files, parsed once, as the studio's LoRA cache keeps them). Each switch applies a random stack of
0–3 of them with random weights, through the patcher the studio uses, with its default budget of exact copies. The
figures: RSS growth from the end of the warm-up to the end (and its maximum on the way), and the number of weight
tensors that differ from the base after ``apply([])`` (SHA-256 of every parameter and buffer, before and after).
The baseline of the growth figure is the RSS right after the warm-up, measured in the same run.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lora_apply import build_models, rss_mb, write_lora  # noqa: E402

from loradeck.families import Family  # noqa: E402
from loradeck.lora import LoraPatcher, StackEntry, keymap_for_family, load_lora  # noqa: E402

BENCH = "soak_switches"


def emit(figure: str, ours: float, baseline: float, baseline_name: str, unit: str) -> None:
    ratio = round(ours / baseline, 4) if baseline else None
    print(json.dumps(dict(bench=BENCH, figure=figure, ours=round(ours, 3), baseline=round(baseline, 3),
                          baseline_name=baseline_name, ratio=ratio, unit=unit)), flush=True)  # fmt: skip


def digests(comps) -> dict[str, str]:
    out = {}
    for comp, model in comps.items():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            out[f"{comp}.{name}"] = hashlib.sha256(t.detach().contiguous().view(torch.uint8).numpy()).hexdigest()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--switches", type=int, default=500)
    ap.add_argument("--loras", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--seed", type=int, default=18)
    args = ap.parse_args()
    torch.set_num_threads(1)
    unet, te = build_models()
    comps = {"unet": unet, "te1": te}
    keymap = keymap_for_family(Family.SD1)
    tmp = Path(tempfile.mkdtemp(prefix="loradeck-soak-"))
    loras = []
    for i in range(args.loras):
        write_lora(tmp / f"l{i}.safetensors", comps, keymap, seed=100 + i)
        loras.append(load_lora(tmp / f"l{i}.safetensors"))
    base = digests(comps)
    patcher = LoraPatcher(comps, keymap)
    rng = random.Random(args.seed)
    gc.collect()
    start_rss = rss_mb()
    samples, t0 = [], time.perf_counter()
    for i in range(args.switches):
        picks = rng.sample(loras, rng.randint(0, 3))
        stack = [StackEntry(lo, rng.choice([1.0, 0.5, 0.0]), rng.uniform(-1.5, 1.5)) for lo in picks]
        patcher.apply(stack)
        samples.append(rss_mb())
        if (i + 1) % 50 == 0:
            print(f"# {i + 1} switches, RSS {samples[-1]:.0f} MiB, undo {patcher.undo_bytes() / 2**20:.0f} MiB, "
                  f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)  # fmt: skip
    elapsed = time.perf_counter() - t0
    warm = samples[args.warmup - 1]
    after = samples[args.warmup :]
    undo_mib = patcher.undo_bytes() / 2**20
    copied_mib = sum(s.original.numel() * s.original.element_size() for s in patcher._slots.values()
                     if s.original is not None) / 2**20  # fmt: skip
    patcher.apply([])
    differing = sum(1 for k, v in digests(comps).items() if base[k] != v)
    held_rss = rss_mb()
    patcher.restore()
    gc.collect()
    freed_rss = rss_mb()

    emit("rss_growth_after_warmup_pct", 100 * (samples[-1] - warm) / warm, 0.0, "none (0 % is the target)", "%")
    emit("rss_end_mib", samples[-1], warm, f"RSS after the {args.warmup}-switch warm-up", "MiB")
    emit("rss_max_after_warmup_mib", max(after), warm, f"RSS after the {args.warmup}-switch warm-up", "MiB")
    emit(
        "weights_differing_after_apply_empty", differing, 0, f"of {len(base)} tensors, base before the soak", "tensors"
    )
    print(json.dumps({"note": "details", "switches": args.switches, "loras": args.loras, "start_rss_mib": round(start_rss, 1),
                      "undo_mib_at_end": round(undo_mib, 1), "exact_copies_mib": round(copied_mib, 1),
                      "rss_after_apply_empty_mib": round(held_rss, 1), "rss_after_restore_mib": round(freed_rss, 1),
                      "seconds": round(elapsed, 1), "per_switch_s": round(elapsed / args.switches, 3)}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
