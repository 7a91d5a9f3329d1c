"""Sample pictures during training, from kohya prompt lines (``a cat --n ugly --w 512 --h 512 --s 20 --l 7 --d 1``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image


@dataclass(frozen=True)
class SamplePrompt:
    prompt: str
    negative: str = ""
    width: int | None = None
    height: int | None = None
    steps: int = 20
    cfg: float = 7.0
    seed: int = 0


def parse_sample_prompt(line: str, index: int = 0) -> SamplePrompt:
    """kohya ``line_to_prompt_dict``: options split on `` --``; a missing seed becomes the line's index."""
    parts = re.split(r"\s+--", " " + line.strip())
    prompt = parts[0].strip()
    opts: dict = {"seed": index}
    for part in parts[1:]:
        key, _, value = part.strip().partition(" ")
        value = value.strip()
        try:
            if key == "n":
                opts["negative"] = value
            elif key == "w":
                opts["width"] = int(value)
            elif key == "h":
                opts["height"] = int(value)
            elif key == "s":
                opts["steps"] = max(1, min(1000, int(value)))
            elif key == "l":
                opts["cfg"] = float(value)
            elif key == "d":
                opts["seed"] = int(value)
        except ValueError:
            continue  # kohya ignores options it cannot read
    return SamplePrompt(prompt, **opts)


class Sampler:
    """A diffusers pipeline over the models being trained (the LoRA wrappers are live in them)."""

    def __init__(self, base, device: torch.device):
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

        from loradeck.engine.schedulers import make_scheduler

        scheduler = make_scheduler(dict(base.scheduler_config), "Euler", "Automatic")
        parts = dict(vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=base.unet,
                     scheduler=scheduler)  # fmt: skip
        if base.text_encoder_2 is not None:
            self.pipe = StableDiffusionXLPipeline(
                **parts, text_encoder_2=base.text_encoder_2, tokenizer_2=base.tokenizer_2
            )
        else:
            self.pipe = StableDiffusionPipeline(
                **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
            )
        self.pipe.set_progress_bar_config(disable=True)
        self.native = base.sample_size
        self.device = device

    def render(self, sp: SamplePrompt) -> Image.Image:
        gen = torch.Generator("cpu").manual_seed(sp.seed)
        w = sp.width or self.native
        h = sp.height or self.native
        with torch.inference_mode():
            out = self.pipe(
                sp.prompt,
                negative_prompt=sp.negative or None,
                width=w,
                height=h,
                num_inference_steps=sp.steps,
                guidance_scale=sp.cfg,
                generator=gen,
                output_type="np",
            ).images[0]
        return Image.fromarray(np.round(out * 255).clip(0, 255).astype(np.uint8))


def sample_path(folder: Path, name: str, step: int, index: int, seed: int) -> Path:
    """kohya's sample name: ``{name}_{step:06d}_{index:02d}_{seed}.png`` (timestamp left out: reruns overwrite)."""
    return folder / f"{name}_{step:06d}_{index:02d}_{seed}.png"
