"""LoRA apply/switch/stack benchmark: loradeck's patcher vs diffusers, SD1.5-architecture models, fp32 CPU.

    taskset -c 1 python bench/lora_apply.py [--quick]

Random-weight SD1.5 U-Net + CLIP-L text encoder (shipped configs), three kohya rank-32 LoRAs over all 264 modules
(fp16 files, as trainers write them). Prints one JSON object per figure per line; every baseline is measured in the
same run on the same models.
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
from accelerate import init_empty_weights
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

from loradeck.families import Family
from loradeck.lora import LoraPatcher, StackEntry, keymap_for_family, load_lora

BENCH = "lora_apply"


def emit(figure, ours, baseline, baseline_name, unit="s"):
    ratio = ours / baseline if baseline else None
    print(
        json.dumps(
            dict(
                bench=BENCH,
                figure=figure,
                ours=round(ours, 4),
                baseline=round(baseline, 4),
                baseline_name=baseline_name,
                ratio=round(ratio, 3) if ratio else None,
                unit=unit,
            )
        ),
        flush=True,
    )


def rss_mb(field="VmRSS") -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:  # "5" resets VmHWM (peak RSS) to the current RSS
        f.write("5")


def build_models():
    d = resources.files("loradeck") / "configs" / "sd15"
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(d / "unet")))
        te = CLIPTextModel(CLIPTextConfig.from_json_file(str(d / "text_encoder" / "config.json")))
    unet, te = unet.to_empty(device="cpu").eval(), te.to_empty(device="cpu").eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in (unet, te):
            for p in m.parameters():
                p.normal_(0, 0.02, generator=g)
            for b in m.buffers():
                if b.is_floating_point():
                    b.zero_()
    te.embeddings.position_ids = torch.arange(77).unsqueeze(0) if hasattr(te.embeddings, "position_ids") else None
    return unet, te


def write_lora(path: Path, comps, keymap, seed: int, rank: int = 32) -> None:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, ref in keymap.modules.items():
        w = comps[ref.component].get_submodule(ref.path).weight
        conv = w.dim() == 4
        sd[f"{name}.lora_down.weight"] = (
            torch.randn(rank, w.shape[1], *((1, 1) if conv else ()), generator=g) * 0.05
        ).half()
        sd[f"{name}.lora_up.weight"] = (
            torch.randn(w.shape[0], rank, *((1, 1) if conv else ()), generator=g) * 0.05
        ).half()
        sd[f"{name}.alpha"] = torch.tensor(16.0, dtype=torch.float16)
    save_file(sd, str(path), metadata={"ss_network_dim": str(rank), "ss_network_alpha": "16"})


REPEATS = 3


def timed(fn, repeat=1, reset=None):
    """Best of ``repeat`` runs of ``fn``; ``reset`` (untimed) puts the state back before each run."""
    best = float("inf")
    for _ in range(repeat):
        if reset is not None:
            reset()
        gc.collect()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip the U-Net step timing")
    ap.add_argument("--step-repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    unet, te = build_models()
    comps = {"unet": unet, "te1": te}
    keymap = keymap_for_family(Family.SD1)
    touched = sum(comps[r.component].get_submodule(r.path).weight.numel() * 4 for r in keymap.modules.values())
    tmp = Path(tempfile.mkdtemp(prefix="loradeck-bench-"))
    files = [tmp / f"lora{i}.safetensors" for i in range(3)]
    for i, f in enumerate(files):
        write_lora(f, comps, keymap, seed=10 + i)
    print(f"# touched weights: {touched / 2**20:.0f} MiB in {len(keymap.modules)} modules", file=sys.stderr)

    # ---- ours
    patcher = LoraPatcher(comps, keymap)
    # peak RSS of a 3-LoRA stack (files already loaded) over the touched weights' size; first, on a fresh heap
    ls = [load_lora(f) for f in files]
    gc.collect()
    reset_peak()
    rss0 = rss_mb()
    patcher.apply([StackEntry(lo, 0.5, w) for lo, w in zip(ls, (0.8, 0.5, 0.3), strict=True)])
    peak, steady, undo = rss_mb("VmHWM") - rss0, rss_mb() - rss0, patcher.undo_bytes() / 2**20
    copied = sum(s.original.numel() * 4 for s in patcher._slots.values() if s.original is not None) / 2**20
    patcher.restore()  # frees the copies: the next apply starts cold

    loras: dict[int, object] = {}

    def ours_apply():
        loras[0] = load_lora(files[0])
        patcher.apply([StackEntry(loras[0], 1.0, 1.0)])

    def ours_switch():
        loras[1] = load_lora(files[1])
        patcher.apply([StackEntry(loras[1], 1.0, 1.0)])

    def ours_stack3():
        ls = [load_lora(f) for f in files]
        patcher.apply([StackEntry(lo, 0.5, w) for lo, w in zip(ls, (0.8, 0.5, 0.3), strict=True)])

    a_loaded = load_lora(files[0])
    t_apply_cold = timed(ours_apply, REPEATS, reset=patcher.restore)  # copies allocated and filled on the way
    # from A to B; between runs the state goes back to A (the studio's path: apply(stack) per generation)
    t_switch = timed(ours_switch, REPEATS, reset=lambda: patcher.apply([StackEntry(a_loaded, 1.0, 1.0)]))
    t_apply = timed(ours_apply, REPEATS, reset=lambda: patcher.apply([]))  # copies kept from earlier stacks
    t_stack3 = timed(ours_stack3, REPEATS, reset=lambda: patcher.apply([]))
    patcher.apply([])

    # merge only (file already loaded) vs the floor: the same GEMM + in-place add over the same weights
    lora0 = load_lora(files[0])
    t_restore = timed(lambda: patcher.apply([]), REPEATS, reset=lambda: patcher.apply([StackEntry(lora0, 1.0, 1.0)]))
    factors = []
    for spec in lora0.modules.values():
        ref = keymap.resolve(spec.name)
        w = comps[ref.component].get_submodule(ref.path).weight
        s = spec.alpha / spec.rank
        up = spec.tensors["lora_up.weight"].float().reshape(w.shape[0], -1) * s
        factors.append((w, up, spec.tensors["lora_down.weight"].float().reshape(spec.rank, -1)))

    def floor():
        with torch.no_grad():
            for w, up, down in factors:
                w.data.view(w.shape[0], -1).add_(up @ down)

    def floor_undo():
        with torch.no_grad():
            for w, up, down in factors:
                w.data.view(w.shape[0], -1).sub_(up @ down)

    patcher.restore()  # the floor writes the weights behind the patcher's back: let it keep no copies meanwhile
    t_floor = timed(floor, REPEATS)
    for _ in range(REPEATS):
        floor_undo()
    t_apply_merge = timed(lambda: patcher.apply([StackEntry(lora0, 1.0, 1.0)]), REPEATS, lambda: patcher.apply([]))
    patcher.restore()

    # the corrections-only scheme (copy_share=0: what GPUs use, and the CPU beyond the share)
    lean = LoraPatcher(comps, keymap, copy_share=0.0)
    lora1 = load_lora(files[1])
    lean_apply = timed(lambda: lean.apply([StackEntry(lora0, 1.0, 1.0)]))
    lean_switch = timed(lambda: lean.apply([StackEntry(lora1, 1.0, 1.0)]))
    lean_restore = timed(lambda: lean.apply([]))
    lean.apply([StackEntry(lo, 0.5, w) for lo, w in zip(ls, (0.8, 0.5, 0.3), strict=True)])
    lean_undo = lean.undo_bytes() / 2**20
    lean.restore()

    # one U-Net step with 3 LoRAs merged vs plain, interleaved so that drift hits both alike
    t_step_lora = t_step_plain = 1.0
    if not args.quick:
        x, t, ctx = torch.randn(1, 4, 64, 64), torch.tensor(500), torch.randn(1, 77, 768)
        stack = [StackEntry(lo, 0.5, w) for lo, w in zip(ls, (0.8, 0.5, 0.3), strict=True)]
        lora_times, plain_times = [], []
        with torch.no_grad():
            unet(x, t, ctx)
            for _ in range(args.step_repeats):
                patcher.apply(stack)
                lora_times.append(timed(lambda: unet(x, t, ctx)))
                patcher.apply([])
                plain_times.append(timed(lambda: unet(x, t, ctx)))
        t_step_lora, t_step_plain = min(lora_times), min(plain_times)
    patcher.restore()

    # ---- diffusers baselines on the same models
    pipe = StableDiffusionPipeline(
        vae=None,
        text_encoder=te,
        tokenizer=None,
        unet=unet,
        scheduler=None,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)

    def d_apply():
        pipe.load_lora_weights(str(files[0]), adapter_name="a")
        pipe.fuse_lora()

    def d_switch():
        pipe.unfuse_lora()
        pipe.unload_lora_weights()
        pipe.load_lora_weights(str(files[1]), adapter_name="b")
        pipe.fuse_lora()

    def d_stack3():
        for i, f in enumerate(files):
            pipe.load_lora_weights(str(f), adapter_name=f"s{i}")
        pipe.set_adapters([f"s{i}" for i in range(3)], adapter_weights=[0.8, 0.5, 0.3])
        pipe.fuse_lora()

    def d_reset():
        pipe.unfuse_lora()
        pipe.unload_lora_weights()

    def d_reset_to_a():
        d_reset()
        d_apply()

    d_apply()
    d_t_apply = timed(d_apply, REPEATS, reset=d_reset)
    d_t_switch = timed(d_switch, REPEATS, reset=d_reset_to_a)
    d_t_stack3 = timed(d_stack3, REPEATS, reset=d_reset)
    d_reset()

    emit("apply_s", t_apply, d_t_apply, "diffusers load_lora_weights+fuse_lora")
    emit(
        "apply_cold_s",
        t_apply_cold,
        d_t_apply,
        "diffusers load_lora_weights+fuse_lora (ours: first LoRA, copies allocated)",
    )
    emit("switch_s", t_switch, d_t_switch, "diffusers unfuse_lora+unload_lora_weights+load_lora_weights+fuse_lora")
    emit("stack3_s", t_stack3, d_t_stack3, "diffusers 3×load_lora_weights+set_adapters+fuse_lora")
    emit("apply_vs_floor", t_apply_merge, t_floor, "torch loop: W += (s·U)@D over the same 264 weights")
    emit("step_s", t_step_lora, t_step_plain, "plain U-Net step (64×64 latent, batch 1)")
    emit("rss_mb", peak, touched / 2**20, "size of the touched fp32 weights", unit="MiB")
    print(
        json.dumps(
            dict(
                bench=BENCH,
                note="details",
                restore_s=round(t_restore, 4),
                undo_mib=round(undo, 1),
                copied_mib=round(copied, 1),
                steady_rss_overhead_mib=round(steady, 1),
                corrections_only=dict(
                    apply_s=round(lean_apply, 4),
                    switch_s=round(lean_switch, 4),
                    restore_s=round(lean_restore, 4),
                    undo_mib_stack3=round(lean_undo, 1),
                ),
            )
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
