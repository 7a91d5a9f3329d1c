"""LoRA tools benchmark: loradeck's merge / resize / extract vs kohya's scripts' math, SD1.5-size rank-32 LoRAs, CPU.

    python bench/lora_tools.py [--every 4] [--rank 32]

Module names and weight shapes of SD1.5 (the 264 kohya default modules: U-Net attention/ff/proj + CLIP-L attention/MLP)
come from the configs shipped in the package; ``--every N`` keeps every N-th module (all distinct shapes stay in) so
the baselines finish on a shared CPU. Two random kohya LoRAs (rank 32, α 16, fp16 files as trainers write them).

Baselines — kohya sd-scripts' math written out here (``networks/*.py``), per module, as the scripts do it:
- merge --concat: load both files, scale the ups by the ratio·α/r, concatenate along the rank, save;
- svd_merge_lora: ΔW = Σ ratio·(α/r)·up@down dense, ``torch.linalg.svd(ΔW)`` (full U and V, as kohya calls it),
  up = U·diag(S) cut to the rank, down = Vh cut, clamp at the 0.99 quantile, save;
- resize_lora: ΔW = up@down dense, ``torch.linalg.svd`` (full), cut, clamp at 0.99, save;
- extract_lora_from_models: diff = W_tuned − W_base, ``torch.linalg.svd`` (full), cut, clamp at 0.99 (in memory:
  base and tuned weights are generated per module, the timing covers the math only for both sides).
Ours go through ``run_tool`` (file read, math, write with metadata and hashes) except extract (math only, the same
per-module work as the baseline). Also printed: the SVD merge's total Frobenius error, ours vs kohya's (lower is
better; ours is the Eckart–Young optimum). One JSON object per figure per line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from loradeck.families import Family
from loradeck.lora.files.shapes import module_shapes
from loradeck.lora.keymap import keymap_for_family

BENCH = "lora_tools"


def emit(figure, ours, baseline, baseline_name, unit="s"):
    ratio = ours / baseline if baseline else None
    print(json.dumps(dict(bench=BENCH, figure=figure, ours=round(ours, 4), baseline=round(baseline, 4),
                          baseline_name=baseline_name, ratio=round(ratio, 3) if ratio else None, unit=unit)),
          flush=True)  # fmt: skip


def modules(every: int) -> dict[str, tuple[int, ...]]:
    shapes = module_shapes(Family.SD1)
    names = [n for n in keymap_for_family(Family.SD1).modules if n in shapes]
    return {n: shapes[n] for n in names[::every]}


def write_lora(path: Path, mods, rank: int, alpha: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape in mods.items():
        sd[f"{name}.lora_down.weight"] = (torch.randn(rank, *shape[1:], generator=g) * 0.05).half()
        up_shape = (shape[0], rank, 1, 1) if len(shape) == 4 else (shape[0], rank)
        sd[f"{name}.lora_up.weight"] = (torch.randn(up_shape, generator=g) * 0.05).half()
        sd[f"{name}.alpha"] = torch.tensor(alpha).half()
    save_file(sd, str(path), metadata={"ss_network_dim": str(rank), "ss_network_alpha": str(alpha)})


def _kohya_cut(mat: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    u, s, vh = torch.linalg.svd(mat)  # kohya: full_matrices left at its default (True)
    u = u[:, :rank] @ torch.diag(s[:rank])
    vh = vh[:rank, :]
    dist = torch.cat([u.flatten(), vh.flatten()])
    hi = torch.quantile(dist, 0.99)
    return u.clamp(-hi, hi), vh.clamp(-hi, hi)


def _factors(sd, name):
    up, down = sd[f"{name}.lora_up.weight"].float(), sd[f"{name}.lora_down.weight"].float()
    alpha = float(sd[f"{name}.alpha"])
    return up.reshape(up.shape[0], -1), down.reshape(down.shape[0], -1), alpha / down.shape[0]


def kohya_concat(files, ratios, out: Path, names) -> None:
    sds = [load_file(str(f)) for f in files]
    merged = {}
    for name in names:
        ups, downs = [], []
        for sd, ratio in zip(sds, ratios, strict=True):
            up, down, scale = _factors(sd, name)
            ups.append(up * ratio * scale)
            downs.append(down)
        merged[f"{name}.lora_up.weight"] = torch.cat(ups, 1).half()
        merged[f"{name}.lora_down.weight"] = torch.cat(downs, 0).half()
        merged[f"{name}.alpha"] = torch.tensor(float(merged[f"{name}.lora_down.weight"].shape[0])).half()
    save_file(merged, str(out))


def kohya_svd_merge(files, ratios, rank, out: Path, names, keep: dict) -> None:
    sds = [load_file(str(f)) for f in files]
    merged = {}
    for name in names:
        mat = None
        for sd, ratio in zip(sds, ratios, strict=True):
            up, down, scale = _factors(sd, name)
            term = ratio * scale * (up @ down)
            mat = term if mat is None else mat + term
        up, down = _kohya_cut(mat, rank)
        keep[name] = (mat, up, down)
        merged[f"{name}.lora_up.weight"] = up.half().contiguous()
        merged[f"{name}.lora_down.weight"] = down.half().contiguous()
        merged[f"{name}.alpha"] = torch.tensor(float(rank)).half()
    save_file(merged, str(out))


def kohya_resize(path, rank, out: Path, names) -> None:
    sd = load_file(str(path))
    resized = {}
    for name in names:
        up, down, scale = _factors(sd, name)
        up, down = _kohya_cut(up @ down, rank)
        resized[f"{name}.lora_up.weight"] = up.half().contiguous()
        resized[f"{name}.lora_down.weight"] = down.half().contiguous()
        resized[f"{name}.alpha"] = torch.tensor(scale * rank).half()
    save_file(resized, str(out))


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--only", choices=["files", "extract"], help="Run only the file tools or only extract.")
    args = ap.parse_args()
    from loradeck.tools import MergeRequest, run_tool

    mods = modules(args.every)
    names = list(mods)
    r = args.rank
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        a, b = tmp / "a.safetensors", tmp / "b.safetensors"
        write_lora(a, mods, r, r / 2, 1)
        write_lora(b, mods, r, r / 2, 2)
        run_tool(MergeRequest(inputs=[(a, 1.0)], out=tmp / "warm.safetensors"))  # imports, shape tables
        if args.only != "extract":
            files_figures(tmp, a, b, r, names)
        if args.only != "files":
            extract_figure(mods, r)
    print(json.dumps({"bench": BENCH, "modules": len(mods), "of": len(keymap_for_family(Family.SD1).modules),
                      "rank": r, "threads": torch.get_num_threads()}), flush=True)  # fmt: skip


def files_figures(tmp: Path, a: Path, b: Path, r: int, names: list[str]) -> None:
    from loradeck.tools import MergeRequest, ResizeRequest, run_tool

    ours = timed(lambda: run_tool(MergeRequest(inputs=[(a, 0.7), (b, 0.3)], out=tmp / "c.safetensors")))
    base = timed(lambda: kohya_concat([a, b], [0.7, 0.3], tmp / "kc.safetensors", names))
    emit("concat_merge_s", ours, base, "kohya merge_lora --concat math (load, scale, cat, save)")

    res = {}
    ours = timed(lambda: res.setdefault("m", run_tool(MergeRequest(inputs=[(a, 0.7), (b, 0.3)], rank=r,
                                                                   out=tmp / "s.safetensors"))))  # fmt: skip
    keep: dict = {}
    base = timed(lambda: kohya_svd_merge([a, b], [0.7, 0.3], r, tmp / "ks.safetensors", names, keep))
    emit("svd_merge_s", ours, base, "kohya svd_merge_lora math (dense ΔW, full torch.linalg.svd, clamp 0.99)")
    ours_err = sum(row["error"] ** 2 for row in res["m"].per_module) ** 0.5
    kohya_err = sum(float((m - u @ d).norm()) ** 2 for m, u, d in keep.values()) ** 0.5
    emit("svd_merge_fro_error", ours_err, kohya_err, "kohya svd_merge_lora (same inputs, rank)", unit="‖ΔW−ΔW_r‖F")

    ours = timed(lambda: run_tool(ResizeRequest(input=tmp / "c.safetensors", rank=8, out=tmp / "r.safetensors")))
    base = timed(lambda: kohya_resize(tmp / "c.safetensors", 8, tmp / "kr.safetensors", names))
    emit("resize_s", ours, base, f"kohya resize_lora math ({2 * r} → 8; dense ΔW, full svd, clamp 0.99)")


def extract_figure(mods, r: int) -> None:
    from loradeck.lora.ops.extract import extract_module

    g = torch.Generator().manual_seed(3)
    t_ours = t_base = 0.0
    for name, shape in mods.items():
        w0 = torch.randn(shape, generator=g) * 0.02
        n = w0[0].numel()
        w1 = w0 + ((torch.randn(shape[0], r, generator=g) @ torch.randn(r, n, generator=g)) * 1e-3).reshape(shape)
        w1 += torch.randn(shape, generator=g) * 1e-5
        t_ours += timed(lambda w0=w0, w1=w1, name=name: extract_module(name, w0, w1, r))
        t_base += timed(lambda w0=w0, w1=w1: _kohya_cut((w1 - w0).reshape(w0.shape[0], -1).float(), r))
    emit("extract_s", t_ours, t_base, "kohya extract_lora_from_models math (diff, full torch.linalg.svd, clamp)")


if __name__ == "__main__":
    main()
