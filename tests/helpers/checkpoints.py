"""Write random-weight single-file checkpoints in the original (LDM) key layout, and a tiny CLIP tokenizer.

The checkpoints are built from the configs shipped in ``loradeck/configs`` — at full size, or reduced: narrower
U-Net and VAE, one or two text-encoder layers, a small vocabulary. Reduced files keep every real key name pattern
(same block numbering, same transformer depths, same text-encoder widths) and every family-detection signal
(text-encoder prefixes, context dims 768/1024/2048, SDXL's ``label_emb`` of width 2816).
"""

from __future__ import annotations

import json
import tempfile
from functools import cache
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from loradeck.demo.build import build_tokenizer
from loradeck.families import Family
from loradeck.formats.ldm_configs import shipped_configs
from loradeck.formats.ldm_keys import TEXT_ENCODERS, to_ldm

FAMILY_OF = {"sd15": Family.SD1, "sd2": Family.SD2, "sd2v": Family.SD2, "sdxl": Family.SDXL}
TOKENIZER_VOCAB = 640  # the tiny tokenizer has 633 entries


@cache
def tokenizer_ids() -> tuple[int, int]:
    """(bos, eos) ids of the tiny tokenizer, so that reduced text encoders pool at the right token."""
    with tempfile.TemporaryDirectory() as d:
        vocab = json.loads((write_tokenizer(Path(d)) / "vocab.json").read_text())
    return vocab["<|startoftext|>"], vocab["<|endoftext|>"]


def _heads(width: int) -> int:  # the rule loradeck.formats.ldm_configs applies
    return width // 64 if width >= 64 and width % 64 == 0 else 1


def model_configs(name: str, *, reduced: bool = True) -> dict[str, dict]:
    """The configs a fixture is built from: the shipped ones, or their reduced-width version."""
    configs = shipped_configs(name)
    if not reduced:
        return configs
    unet = configs["unet"]
    widths = [32, 64, 64] if name == "sdxl" else [32, 64, 64, 64]
    unet["block_out_channels"] = widths
    if name != "sd15":
        unet["attention_head_dim"] = [_heads(w) for w in widths]
    configs["vae"]["block_out_channels"] = [32, 32, 64, 64]
    for comp in ("text_encoder", "text_encoder_2"):
        if comp in configs:
            te = configs[comp]
            te.update(num_hidden_layers=2, intermediate_size=128, vocab_size=TOKENIZER_VOCAB)
            te["num_attention_heads"] = _heads(te["hidden_size"])
            te["bos_token_id"], te["eos_token_id"] = tokenizer_ids()
    return configs


def build_components(
    name: str, configs: dict[str, dict], seed: int = 0, dtype: torch.dtype = torch.float32
) -> dict[str, dict[str, torch.Tensor]]:
    """Random-weight diffusers state dicts per component, plus the ``extra`` tensors real files carry.

    Built directly in ``dtype``: a full-size SDXL in fp16 needs 7 GB instead of 10 GB fp32 + the fp16 copy.
    """
    family = FAMILY_OF[name]
    gen_state = torch.random.get_rng_state()
    default_dtype = torch.get_default_dtype()
    torch.manual_seed(seed)
    torch.set_default_dtype(dtype)
    try:
        out = {
            "unet": UNet2DConditionModel.from_config(configs["unet"]).state_dict(),
            "vae": AutoencoderKL.from_config(configs["vae"]).state_dict(),
        }
        extra: dict[str, torch.Tensor] = {}
        for comp, prefix, kind in TEXT_ENCODERS[family]:
            cfg = dict(configs[comp])
            if family == Family.SD2:
                cfg["num_hidden_layers"] += 1  # OpenCLIP-H's last block: in the file, never run by SD 2.x
            te_cfg = CLIPTextConfig(**{k: v for k, v in cfg.items() if not k.startswith("_")})
            model_cls = CLIPTextModelWithProjection if kind == "openclip_proj" else CLIPTextModel
            sd = model_cls(te_cfg).state_dict()
            # give the layer norms non-trivial values, so that a mix-up of ln_1/ln_2 would show
            out[comp] = {k: (v + torch.randn_like(v) * 0.1 if "norm" in k else v) for k, v in sd.items()}
            if kind == "clip":
                n = te_cfg.max_position_embeddings
                extra[prefix + "embeddings.position_ids"] = torch.arange(n).unsqueeze(0)
            else:
                extra[prefix + "logit_scale"] = torch.tensor(4.6052)
                if kind == "openclip":
                    extra[prefix + "text_projection"] = torch.randn(te_cfg.hidden_size, te_cfg.projection_dim)
        out["unet"] = {k: v + torch.randn_like(v) * 0.01 if "norm" in k else v for k, v in out["unet"].items()}
        out["extra"] = extra
    finally:
        torch.random.set_rng_state(gen_state)
        torch.set_default_dtype(default_dtype)
    return out


def write_checkpoint(
    path: Path,
    name: str = "sd15",
    *,
    reduced: bool = True,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    metadata: dict[str, str] | None = None,
) -> dict[str, torch.Tensor]:
    """Write a random-weight checkpoint of family ``name`` (sd15, sd2, sd2v, sdxl) in the LDM layout; return it.

    ``.safetensors`` or ``.ckpt`` (a pickled ``{"state_dict": ...}``, as the original training code saved) by suffix.
    """
    components = build_components(name, model_configs(name, reduced=reduced), seed, dtype)
    state = {
        k: (v.to(dtype) if v.is_floating_point() else v).contiguous()
        for k, v in to_ldm(components, FAMILY_OF[name]).items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".ckpt":
        torch.save({"state_dict": state, "global_step": 1}, path)
    else:
        save_file(state, str(path), metadata=metadata)
    return state


def write_tokenizer(folder: Path) -> Path:
    """A tiny CLIP tokenizer (vocab.json, merges.txt, configs) in ``folder``; the demo model's builder makes it."""
    build_tokenizer(folder)
    return folder
