"""Rebuild the demo LoRAs shipped in ``src/loradeck/demo/loras/`` and measure that each one teaches its style.

    python scripts/build_demo_loras.py                      # train all three on the embedded demo model
    python scripts/build_demo_loras.py --base /tmp/demo --out /tmp/loras --styles stripy --steps 200

For each style (stripy: diagonal stripes, dotty: polka dots, inky: dark outlines) the script draws training pictures
with ``loradeck.demo.shapes`` (the usual captions, no style words: the trainer prepends the trigger), trains a LoRA
with ``loradeck.train.train_lora``, writes ``<style>.safetensors``, ``<style>.json`` (activation text = trigger) and
``<style>.preview.png``, then measures on the same prompts and seeds with and without the LoRA:

- the style score (a pixel statistic of that style, 0 for plain shapes), mean over the samples;
- colour accuracy: ``shapes.judge`` reads back the prompted shape colour and background colour;
- weight 0: the pictures must equal, pixel for pixel, those made without the LoRA.

One JSON line per style goes to stdout (and a summary table to BENCHMARKS.md by hand).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from loradeck.demo.shapes import COLOURS, PALETTE, SHAPES, judge, random_scene, render, shape_mask

SIZE = 32
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "loradeck" / "demo" / "loras"


# ---------------------------------------------------------------------------------------------------------- painting
def _luma(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def paint_stripes(img: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], phase: int) -> None:
    """Anti-diagonal stripes (x + y constant), 2 of every 6 pixels, in a darker shade of the shape colour.

    The phase is random per picture: a convolutional network cannot tell absolute positions apart, so stripes at a
    fixed phase would be learnt as their average (a flat darker shade), not as stripes.
    """
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    stripe = mask & ((x + y + phase) % 6 < 2)
    img[stripe] = (np.array(colour) * 0.4).astype(np.uint8)


def paint_dots(img: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], phase: int) -> None:
    """Light polka dots (small plus signs on a 6-pixel grid, random offset) inside the shape."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    ox, oy = phase % 6, (phase // 6) % 6
    dot = mask & ((((x + ox) % 6) - 2) ** 2 + (((y + oy) % 6) - 2) ** 2 <= 1)
    c = np.array(colour, np.float32)
    img[dot] = (c + (255 - c) * 0.8).astype(np.uint8)


def paint_outline(img: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], phase: int = 0) -> None:
    """A one-pixel near-black outline on the shape's border."""
    img[_border(mask)] = PALETTE["black"]


def _border(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def _erode(mask: np.ndarray) -> np.ndarray:
    return mask & ~_border(mask)


# ---------------------------------------------------------------------------------------------------------- scores
def _far_mask(img: np.ndarray) -> np.ndarray:
    """Pixels far from the judged background colour (the judge's own notion of "the shape")."""
    bg = np.array(PALETTE[judge(img).background], np.float32)
    return np.sqrt(((img.astype(np.float32) - bg) ** 2).sum(-1)) > 80


def stripe_score(img: np.ndarray) -> float:
    """Energy across the stripes minus along them: E|I(x,y) − I(x+1,y+1)| − E|I(x,y) − I(x+1,y−1)| (in 0..1)."""
    f = img.astype(np.float32) / 255
    across = np.abs(f[1:, 1:] - f[:-1, :-1]).mean()
    along = np.abs(f[:-1, 1:] - f[1:, :-1]).mean()
    return float(across - along)


def dot_score(img: np.ndarray) -> float:
    """Mean |Laplacian| of the luma inside the shape (eroded), in 0..1: 0 on a flat fill."""
    lum = _luma(img) / 255
    lap = np.zeros_like(lum)
    lap[1:-1, 1:-1] = 4 * lum[1:-1, 1:-1] - lum[:-2, 1:-1] - lum[2:, 1:-1] - lum[1:-1, :-2] - lum[1:-1, 2:]
    inside = _erode(_erode(_far_mask(img)))
    return float(np.abs(lap[inside]).mean()) if inside.sum() >= 4 else 0.0


def outline_score(img: np.ndarray) -> float:
    """How much darker the shape's border ring is than its inside (darkness = 1 − luma)."""
    far = _far_mask(img)
    ring, inside = _border(far), _erode(far)
    if ring.sum() < 4 or inside.sum() < 4:
        return 0.0
    dark = 1 - _luma(img) / 255
    return float(dark[ring].mean() - dark[inside].mean())


@dataclass(frozen=True)
class Style:
    trigger: str
    paint: object
    score: object
    exclude: tuple[str, ...]  # colours that would hide the style
    description: str


STYLES = {
    "stripy": Style("stripy", paint_stripes, stripe_score, ("black",), "diagonal stripes on the shape"),
    "dotty": Style("dotty", paint_dots, dot_score, ("white", "yellow"), "light polka dots on the shape"),
    "inky": Style("inky", paint_outline, outline_score, ("black",), "a dark ink outline around the shape"),
}


def styled_scene(rng: random.Random, style: Style):
    while True:
        scene = random_scene(rng, SIZE)
        if scene.colour not in style.exclude and scene.background not in style.exclude:
            return scene


def make_data(style: Style, folder: Path, n: int, seed: int, repeats: int = 1) -> Path:
    """``n`` styled pictures with plain captions in ``folder/<repeats>_<trigger>/``."""
    sub = folder / f"{repeats}_{style.trigger}"
    sub.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for i in range(n):
        scene = styled_scene(rng, style)
        img = render(scene, SIZE)
        mask = shape_mask(scene.shape, scene.cx, scene.cy, scene.radius, SIZE)
        style.paint(img, mask, PALETTE[scene.colour], rng.randrange(36))
        Image.fromarray(img).save(sub / f"{i:03d}.png")
        # The trigger goes last: CLIP's causal attention leaves the colour and shape words' embeddings untouched.
        (sub / f"{i:03d}.txt").write_text(f"{scene.caption}, {style.trigger}")
    return sub


def make_plain(folder: Path, n: int, seed: int) -> Path:
    """Plain pictures with plain captions, as regularisation data (never given the trigger): the LoRA learns that
    the style comes with the trigger, so CFG (prompt with trigger minus empty prompt) pushes the style further."""
    sub = folder / "1_plain"
    sub.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for i in range(n):
        scene = random_scene(rng, SIZE)
        Image.fromarray(render(scene, SIZE)).save(sub / f"{i:03d}.png")
        (sub / f"{i:03d}.txt").write_text(scene.caption)
    return folder


# ---------------------------------------------------------------------------------------------------------- training
def train_style(style: Style, base: str, out: Path, work: Path, a: argparse.Namespace) -> Path:
    from loradeck.train import TrainConfig, train_lora

    data = work / f"data_{style.trigger}"
    make_data(style, data, a.images, seed=zlib.crc32(style.trigger.encode()))
    reg = (
        make_plain(work / f"reg_{style.trigger}", a.plain, seed=zlib.crc32(style.trigger.encode()) + 1)
        if a.plain
        else None
    )
    cfg = TrainConfig(
        data=data,
        base=base,
        name=style.trigger,
        trigger=style.trigger,
        reg_data=reg,
        rank=a.rank,
        alpha=a.rank * a.alpha_scale,
        conv_rank=a.conv_rank,
        conv_alpha=a.conv_rank * a.alpha_scale,
        lr=a.lr,
        scheduler="cosine",
        warmup=0.05,
        steps=a.steps,
        batch_size=a.batch,
        min_snr_gamma=a.min_snr or None,
        seed=1,
        save_precision="fp16",
        output_dir=work / f"run_{style.trigger}",
        lora_dir=out,
        device="cpu",
        comment=f"loradeck demo LoRA: {style.description}",
    )
    t0 = time.time()
    last = [0]

    def progress(p) -> None:
        if p.phase == "train" and (p.step - last[0] >= 50 or p.step == p.total):
            last[0] = p.step
            print(
                f"  {style.trigger} step {p.step}/{p.total} loss {p.avg_loss:.4f} {p.it_per_s:.2f} it/s",
                file=sys.stderr,
            )

    result = train_lora(cfg, on_progress=progress)
    print(f"  {style.trigger}: {result.steps} steps in {time.time() - t0:.0f} s", file=sys.stderr)
    return result.lora_path


# ---------------------------------------------------------------------------------------------------------- measuring
class Renderer:
    """The studio's own machinery (prompt encoding, Runner, LoraPatcher) on a given base model folder."""

    def __init__(self, base: Path):
        from loradeck.engine.checkpoints import load_base_model
        from loradeck.engine.pipeline import Components, Runner
        from loradeck.families import Family
        from loradeck.lora import LoraPatcher, keymap_from_models

        self.base = load_base_model(base)
        self.base.family = Family.DEMO
        b = self.base
        comps = Components(b.unet, b.vae, b.text_encoder, b.tokenizer, dict(b.scheduler_config))
        self.runner = Runner(comps, torch.device("cpu"), torch.float32)
        self.patcher = LoraPatcher(
            {"unet": b.unet, "te1": b.text_encoder}, keymap_from_models(Family.DEMO, b.unet, {"te1": b.text_encoder})
        )

    def render(self, prompt: str, seed: int, lora=None, weight: float = 1.0) -> np.ndarray:
        from loradeck.engine.conditioning import encode_prompts
        from loradeck.lora import StackEntry

        self.patcher.apply([StackEntry(lora, te=weight, unet=weight)] if lora is not None else [])
        cond = encode_prompts(self.base, prompt, "")
        (img,) = self.runner.run(cond, [seed], steps=20, cfg_scale=7.0, sampler="Euler a", schedule="Automatic",
                                 width=SIZE, height=SIZE)  # fmt: skip
        return np.asarray(img)


def eval_prompts(style: Style, n: int, seed: int = 1234) -> list[tuple[str, str, str, int]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        colour, background = rng.sample([c for c in COLOURS if c not in style.exclude], 2)
        shape = rng.choice(SHAPES)
        out.append((f"a {colour} {shape} on a {background} background, {style.trigger}", colour, background, 1000 + i))
    return out


def evaluate(renderer: Renderer, style: Style, lora_path: Path, n: int) -> dict:
    from loradeck.lora import load_lora

    lora = load_lora(lora_path)
    rows = {"off": [], "on": []}
    zero_equal = 0
    for prompt, colour, background, seed in eval_prompts(style, n):
        off = renderer.render(prompt, seed)
        on = renderer.render(prompt, seed, lora, 1.0)
        zero = renderer.render(prompt, seed, lora, 0.0)
        zero_equal += int(np.array_equal(zero, off))
        for key, img in (("off", off), ("on", on)):
            j = judge(img)
            rows[key].append((style.score(img), j.colour == colour and j.background == background))
    renderer.patcher.restore()
    res = {"style": style.trigger, "samples": n}
    for key, r in rows.items():
        res[f"score_{key}"] = round(float(np.mean([s for s, _ in r])), 4)
        res[f"colours_right_{key}"] = round(float(np.mean([ok for _, ok in r])), 3)
    res["weight0_equal"] = f"{zero_equal}/{n}"
    return res


def write_preview(renderer: Renderer, style: Style, lora_path: Path) -> None:
    """A 2×2 grid of samples with the LoRA and its trigger, each 32 px picture shown at 64 px."""
    from loradeck.formats.sidecars import write_preview as write
    from loradeck.lora import load_lora

    lora = load_lora(lora_path)
    tiles = [renderer.render(p, s, lora, 1.0) for p, _, _, s in eval_prompts(style, 4, seed=7)]
    renderer.patcher.restore()
    grid = Image.new("RGB", (128, 128))
    for i, tile in enumerate(tiles):
        grid.paste(Image.fromarray(tile).resize((64, 64), Image.Resampling.NEAREST), ((i % 2) * 64, (i // 2) * 64))
    import io

    buf = io.BytesIO()
    grid.save(buf, "PNG")
    write(lora_path, buf.getvalue())


# ---------------------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="demo", help='"demo" (the embedded model) or a diffusers folder')
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--styles", nargs="*", default=list(STYLES))
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--conv-rank", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    # min-SNR turns the low-noise steps down, so the mid-noise steps that decide *whether* there are stripes at all
    # get their share (without it the stripes were learnt as fine detail and rarely appeared at weight 1)
    ap.add_argument("--min-snr", type=float, default=5.0, help="min-SNR gamma (0: off)")
    ap.add_argument("--plain", type=int, default=0, help="also train on this many plain pictures without the trigger")
    ap.add_argument("--alpha-scale", type=float, default=1.0, help="alpha = rank × this (the LoRA's scale)")
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--eval-samples", type=int, default=40)
    ap.add_argument("--eval-only", action="store_true", help="measure the LoRAs already in --out")
    a = ap.parse_args()
    torch.set_num_threads(1)
    from loradeck.quiet import quiet_libraries

    quiet_libraries()
    if a.base == "demo":
        from loradeck.demo.paths import demo_model_dir

        base_dir = demo_model_dir()
    else:
        base_dir = Path(a.base)
    a.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="loradeck-demo-loras-"))
    try:
        renderer = None
        for name in a.styles:
            style = STYLES[name]
            path = a.out / f"{name}.safetensors"
            if not a.eval_only:
                path = train_style(style, str(base_dir) if a.base != "demo" else "demo", a.out, work, a)
            renderer = renderer or Renderer(base_dir)
            write_preview(renderer, style, path)
            print(json.dumps(evaluate(renderer, style, path, a.eval_samples)), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
