"""Helpers that write small LoRA / checkpoint files for library tests."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import save_file

from loradeck.formats.hashes import hash_file


def write_lora(path: Path, metadata: dict | None = None, *, seed: int = 0, rank: int = 4, te: str = "lora_te") -> Path:
    """A tiny kohya LoRA: two modules, ``rank``, optional metadata (values JSON-encoded when not strings)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for mod, width in (
        ("lora_unet_down_blocks_0_attentions_0_proj_in", 32),
        (f"{te}_text_model_encoder_layers_0_mlp_fc1", 768),
    ):
        tensors[f"{mod}.lora_down.weight"] = torch.randn(rank, width, generator=g)
        tensors[f"{mod}.lora_up.weight"] = torch.randn(width, rank, generator=g)
        tensors[f"{mod}.alpha"] = torch.tensor(float(rank))
    md = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    save_file(tensors, str(path), metadata=md or None)
    return path


def write_checkpoint(path: Path, prefix: str = "cond_stage_model.transformer.", seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    save_file(
        {
            f"{prefix}text_model.embeddings.token_embedding.weight": torch.randn(16, 8, generator=g),
            "model.diffusion_model.input_blocks.0.0.weight": torch.randn(4, 4, 3, 3, generator=g),
        },
        str(path),
    )
    return path


def write_diffusers_dir(path: Path, family_dir: str = "sd15") -> Path:
    src = resources.files("loradeck") / "configs" / family_dir
    shutil.copytree(str(src), path)
    return path


class CountingHasher:
    """hash_file with a call counter, to prove what a scan reads."""

    def __init__(self):
        self.calls: list[Path] = []

    def __call__(self, path: Path):
        self.calls.append(Path(path))
        return hash_file(path)
