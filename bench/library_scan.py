"""Library scan speed on 1,000 small synthetic LoRA files: first scan (hash everything) and rescan (index reuse).

    taskset -c 1 python bench/library_scan.py [--count 1000] [--repeats 3]

Baseline, measured in the same run on the same files: a naive scan without an index that opens each file with
``safetensors.safe_open`` to read its metadata and hashes the whole file with ``hashlib.sha256`` — what a tool without
a cache does on every refresh. Ours computes more per file on a first scan (sha256 + AutoV3 + AutoV1 in one pass,
full header validation, sidecars, sqlite writes); on a rescan it only stats files and reads the index.

Prints one JSON object per figure per line; ``ratio`` = baseline / ours (above 1: ours is faster).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from loradeck.library import Library

MODULES = ("down_blocks_0_attentions_0_proj_in", "mid_block_attentions_0_proj_out", "up_blocks_1_attentions_2_proj_in")


def make_loras(root: Path, count: int, extra_modules: int = 0) -> None:
    """``count`` kohya-style LoRAs (3 UNet modules + 1 TE module, rank 8, fp16, ~45 KB) in 10 subfolders,
    with kohya metadata and, for a quarter of them, an A1111 ``.json`` sidecar. ``extra_modules`` more TE-sized
    modules (~25 KB each) make files of realistic size."""
    rng = np.random.default_rng(0)
    extra = [f"lora_te_text_model_encoder_layers_{j % 12}_x{j}" for j in range(extra_modules)]
    for i in range(count):
        folder = root / f"set{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for m in (*[f"lora_unet_{m}" for m in MODULES], "lora_te_text_model_encoder_layers_0_mlp_fc1", *extra):
            width = 768 if m.startswith("lora_te") else 320
            tensors[f"{m}.lora_down.weight"] = rng.standard_normal((8, width), dtype=np.float32).astype(np.float16)
            tensors[f"{m}.lora_up.weight"] = rng.standard_normal((width, 8), dtype=np.float32).astype(np.float16)
            tensors[f"{m}.alpha"] = np.array(8.0, dtype=np.float16)
        metadata = {
            "ss_output_name": f"lora{i}",
            "ss_network_module": "networks.lora",
            "ss_network_dim": "8",
            "ss_network_alpha": "8.0",
            "ss_base_model_version": "sd_v1",
            "ss_tag_frequency": json.dumps({f"10_tok{i}": {f"tok{i}": 30, "1girl": 12, "solo": 9}}),
        }
        save_file(tensors, str(folder / f"lora{i}.safetensors"), metadata=metadata)
        if i % 4 == 0:
            (folder / f"lora{i}.json").write_text(json.dumps({"activation text": f"tok{i}", "preferred weight": 0.8}))


def naive_scan(root: Path) -> int:
    """The baseline: no index; metadata via safe_open and a full-file sha256 of every file, every time."""
    n = 0
    for path in sorted(root.rglob("*.safetensors")):
        with safe_open(str(path), framework="np") as f:
            f.metadata()
        h = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        h.hexdigest()
        n += 1
    return n


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def cpu_timed(fn) -> tuple[float, float, object]:
    """(wall s, CPU s of this process, result): on a shared machine CPU time is the steadier figure."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def emit(figure: str, ours: float, baseline: float, unit: str = "s") -> None:
    line = {
        "bench": "library_scan",
        "figure": figure,
        "ours": round(ours, 4),
        "baseline": round(baseline, 4),
        "baseline_name": "safe_open metadata + hashlib full sha256 per file, no index",
        "ratio": round(baseline / ours, 2) if ours else None,
        "unit": unit,
    }
    print(json.dumps(line), flush=True)


def big_rescan(work: Path, count: int, repeats: int) -> None:
    """Rescan of ``count`` LoRAs of about 9.5 MB (an SD1.5 rank-8 file): where an index matters."""
    lora_dir, ckpt_dir = work / "BigLora", work / "Stable-diffusion"
    make_loras(lora_dir, count, extra_modules=380)
    size_mb = sum(p.stat().st_size for p in lora_dir.rglob("*.safetensors")) / count / 1e6
    naive_scan(lora_dir)
    Library(lora_dir, ckpt_dir, work / "bigcache").scan()
    ours = statistics.median(
        timed(lambda: Library(lora_dir, ckpt_dir, work / "bigcache").scan())[0] for _ in range(repeats)
    )
    naive = statistics.median(timed(lambda: naive_scan(lora_dir))[0] for _ in range(repeats))
    emit(f"rescan unchanged, new process, {count} LoRAs of {size_mb:.1f} MB", ours, naive)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--big-count", type=int, default=40, help="files for the realistic-size figure (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="loradeck-bench-"))
    try:
        lora_dir, ckpt_dir = work / "Lora", work / "Stable-diffusion"
        ckpt_dir.mkdir(parents=True)
        make_loras(lora_dir, args.count)
        naive_scan(lora_dir)  # warm the page cache so both sides read from memory

        firsts, naive_times = [], []
        for r in range(args.repeats):
            cache = work / f"cache{r}"  # a fresh index each time: a true first scan
            wall, cpu, report = cpu_timed(lambda cache=cache: Library(lora_dir, ckpt_dir, cache).scan())
            assert report.loras == args.count and report.hashed == args.count, report
            firsts.append((wall, cpu))
            naive_times.append(cpu_timed(lambda: naive_scan(lora_dir))[:2])
        base_wall = statistics.median(w for w, _ in naive_times)
        base_cpu = statistics.median(c for _, c in naive_times)
        emit(f"first scan, {args.count} LoRAs", statistics.median(w for w, _ in firsts), base_wall)
        emit(f"first scan, {args.count} LoRAs, CPU", statistics.median(c for _, c in firsts), base_cpu, "cpu s")

        cache = work / "cache0"
        rescans_new, rescans_same = [], []
        lib = Library(lora_dir, ckpt_dir, cache)
        lib.scan()
        for _ in range(args.repeats):
            # new Library = new process: everything comes back from sqlite
            wall, cpu, report = cpu_timed(lambda: Library(lora_dir, ckpt_dir, cache).scan())
            assert report.hashed == 0 and report.reused == args.count, report
            rescans_new.append((wall, cpu))
            wall, cpu, report = cpu_timed(lib.refresh)
            assert report.hashed == 0, report
            rescans_same.append((wall, cpu))
        for label, runs in (("new process", rescans_new), ("same Library", rescans_same)):
            figure = f"rescan unchanged, {label}, {args.count} LoRAs"
            emit(figure, statistics.median(w for w, _ in runs), base_wall)
            emit(f"{figure}, CPU", statistics.median(c for _, c in runs), base_cpu, "cpu s")
        rescans_new = [w for w, _ in rescans_new]
        rescans_same = [w for w, _ in rescans_same]
        worst = max(rescans_new + rescans_same)
        print(f"# slowest rescan {worst:.3f} s (target ≤ 1 s)", file=sys.stderr)
        if args.big_count:
            big_rescan(work, args.big_count, args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
