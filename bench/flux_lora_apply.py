"""Flux LoRA apply/switch: loradeck's patcher vs diffusers' load_lora_weights + fuse_lora, reduced Flux, fp32 CPU.

    taskset -c 1 python bench/flux_lora_apply.py [--dim 1024 --double 2 --single 4 --rank 32]

A random-weight FluxTransformer2DModel of Flux.1-dev's structure at a reduced width (shipped config
``configs/flux/transformer``, heads and block counts overridden), two kohya Flux LoRAs (BFL names, fp16 files, α 16)
over every double-block module and the single blocks' linear2/modulation_lin. Single blocks' linear1 is left out of
the files: diffusers 0.42 splits it at Flux.1-dev's hard-coded sizes (3072×3 + 12288) and cannot load it on a reduced
model (loradeck splits by the model's own sizes; tests/lora/test_flux.py checks it). Same models, same run, best of
3 runs each, one JSON line per figure.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import torch
from diffusers import FluxPipeline, FluxTransformer2DModel
from safetensors.torch import save_file

from loradeck.lora import LoraPatcher, StackEntry, load_lora
from loradeck.lora.flux_keys import keymap_from_flux_models

BENCH = "flux_lora_apply"
REPEATS = 3


def emit(figure, ours, baseline, baseline_name, unit="s"):
    ratio = ours / baseline if baseline else None
    row = dict(bench=BENCH, figure=figure, ours=round(ours, 4), baseline=round(baseline, 4))
    row |= dict(baseline_name=baseline_name, ratio=round(ratio, 3) if ratio else None, unit=unit)
    print(json.dumps(row), flush=True)


def timed(fn, repeat=REPEATS, reset=None):
    best = float("inf")
    for _ in range(repeat):
        if reset is not None:
            reset()
        gc.collect()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def build(dim: int, double: int, single: int) -> FluxTransformer2DModel:
    cfg = json.loads((resources.files("loradeck") / "configs" / "flux" / "transformer" / "config.json").read_text())
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    cfg.update(num_attention_heads=dim // 128, num_layers=double, num_single_layers=single)
    torch.manual_seed(0)
    return FluxTransformer2DModel(**cfg).eval()


def write_lora(path: Path, keymap, tr, seed: int, rank: int) -> int:
    g = torch.Generator().manual_seed(seed)
    sd, touched = {}, 0
    for name, ref in keymap.modules.items():
        if ref.component != "transformer" or name.endswith("_linear1"):
            continue
        refs = keymap.resolve_all(name)
        rows = refs[0].total or tr.get_submodule(ref.path).weight.shape[0]
        cols = tr.get_submodule(ref.path).weight.shape[1]
        touched += rows * cols * 4
        sd[f"{name}.lora_down.weight"] = (torch.randn(rank, cols, generator=g) * 0.05).half()
        sd[f"{name}.lora_up.weight"] = (torch.randn(rows, rank, generator=g) * 0.05).half()
        sd[f"{name}.alpha"] = torch.tensor(16.0).half()
    save_file(sd, str(path))
    return touched


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--double", type=int, default=2)
    ap.add_argument("--single", type=int, default=4)
    ap.add_argument("--rank", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tr = build(args.dim, args.double, args.single)
    keymap = keymap_from_flux_models(tr, {})
    tmp = Path(tempfile.mkdtemp(prefix="loradeck-flux-bench-"))
    files = [tmp / f"flux{i}.safetensors" for i in range(2)]
    touched = [write_lora(f, keymap, tr, 10 + i, args.rank) for i, f in enumerate(files)][0]
    print(f"# D={args.dim}: touched weights {touched / 2**20:.0f} MiB", file=sys.stderr)

    patcher = LoraPatcher({"transformer": tr}, keymap)
    loras: dict[int, object] = {}

    def ours_apply():
        loras[0] = load_lora(files[0])
        patcher.apply([StackEntry(loras[0])])

    def ours_switch():
        loras[1] = load_lora(files[1])
        patcher.apply([StackEntry(loras[1])])

    a = load_lora(files[0])
    patcher.apply([StackEntry(a)])
    ours_merged = {k: v.clone() for k, v in tr.state_dict().items()}
    patcher.restore()
    t_apply_cold = timed(ours_apply, reset=patcher.restore)
    t_switch = timed(ours_switch, reset=lambda: patcher.apply([StackEntry(a)]))
    t_apply = timed(ours_apply, reset=lambda: patcher.apply([]))
    patcher.restore()

    pipe = FluxPipeline(
        scheduler=None,
        vae=None,
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=tr,
    )

    def d_apply():
        pipe.load_lora_weights(str(files[0]), adapter_name="a")
        pipe.fuse_lora()

    def d_reset():
        pipe.unfuse_lora()
        pipe.unload_lora_weights()

    def d_switch():
        d_reset()
        pipe.load_lora_weights(str(files[1]), adapter_name="b")
        pipe.fuse_lora()

    def d_reset_to_a():
        d_reset()
        d_apply()

    original = {k: v.clone() for k, v in tr.state_dict().items()}
    d_apply()
    pipe.unload_lora_weights()  # keeps the fused weights, drops the adapter layers
    theirs = tr.state_dict()
    worst = max(float((ours_merged[k] - theirs[k]).abs().max() / theirs[k].abs().max()) for k in ours_merged)
    changed = sum(not torch.equal(ours_merged[k], original[k]) for k in original)
    tr.load_state_dict(original)
    d_apply()
    d_t_apply = timed(d_apply, reset=d_reset)
    d_t_switch = timed(d_switch, reset=d_reset_to_a)
    d_reset()

    emit("apply_s", t_apply, d_t_apply, "diffusers load_lora_weights+fuse_lora")
    emit("apply_cold_s", t_apply_cold, d_t_apply, "diffusers load_lora_weights+fuse_lora (ours: copies allocated)")
    emit("switch_s", t_switch, d_t_switch, "diffusers unfuse_lora+unload_lora_weights+load_lora_weights+fuse_lora")
    print(
        json.dumps(
            dict(
                bench=BENCH,
                note="same merge",
                touched_mib=touched >> 20,
                max_rel_diff_vs_diffusers=worst,
                changed_weights=changed,
            )
        )
    )


if __name__ == "__main__":
    main()
