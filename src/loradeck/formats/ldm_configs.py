"""Model configs for a single-file checkpoint: the shipped config of its family, with the sizes read from its shapes.

Real checkpoints match the shipped configs exactly; reading the sizes from the tensors also lets narrower models with
the same key layout load (our tests write such reduced-width files). What shapes cannot tell is fixed by rule, the
same rule the original models follow: GroupNorm uses 32 groups; attention heads are 64 wide (SD 2.x, SDXL U-Nets,
every CLIP text encoder) or 8 per block (SD 1.x U-Net). A width that is not a multiple of 64 gets one head.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from functools import cache
from importlib import resources

from loradeck.families import Family
from loradeck.formats.ldm_keys import TEXT_ENCODERS, UNET_PREFIX, VAE_PREFIX, UNetLayout, sd2_text_layers

Shapes = Mapping[str, tuple[int, ...]]
COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2", "scheduler")


def shipped_config_name(family: Family, prediction: str = "epsilon") -> str:
    """Folder under ``loradeck/configs``: sd15, sd2 (512 epsilon), sd2v (768 v-prediction) or sdxl."""
    if family == Family.SD2 and prediction == "v":
        return "sd2v"
    name = family.config_dir
    if name is None:
        raise ValueError(f"no shipped config for family {family.value!r}")
    return name


@cache
def _read_shipped(name: str) -> dict[str, dict]:
    root = resources.files("loradeck") / "configs" / name
    out = {}
    for comp in COMPONENTS:
        f = root / comp / ("scheduler_config.json" if comp == "scheduler" else "config.json")
        if f.is_file():
            out[comp] = json.loads(f.read_text())
    out["model_index"] = json.loads((root / "model_index.json").read_text())
    return out


def shipped_configs(name: str) -> dict[str, dict]:
    """A fresh copy of the shipped configs (component → config dict), safe to change."""
    return copy.deepcopy(_read_shipped(name))


def _heads(width: int) -> int:
    return width // 64 if width >= 64 and width % 64 == 0 else 1


def _count(shapes: Shapes, prefix: str) -> int:
    """How many numbered children ``prefix.N`` exist."""
    found = {k[len(prefix) :].split(".")[0] for k in shapes if k.startswith(prefix)}
    return max((int(n) + 1 for n in found if n.isdigit()), default=0)


def infer_unet(shapes: Shapes, family: Family, base: Mapping) -> dict:
    s = {k[len(UNET_PREFIX) :]: v for k, v in shapes.items() if k.startswith(UNET_PREFIX)}
    layout = UNetLayout.from_ldm_keys(s)
    m = layout.layers_per_block
    cfg = dict(base)
    widths, depths = [], []
    for lv in range(layout.levels):
        k = 1 + lv * (m + 1)
        widths.append(s[f"input_blocks.{k}.0.out_layers.3.weight"][0])
        depths.append(_count(s, f"input_blocks.{k}.1.transformer_blocks.") or 1)
    cfg["down_block_types"] = ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in layout.down_attn]
    cfg["up_block_types"] = ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in layout.up_attn]
    cfg["block_out_channels"] = widths
    cfg["layers_per_block"] = m
    cfg["in_channels"] = s["input_blocks.0.0.weight"][1]
    cfg["out_channels"] = s["out.2.weight"][0]
    if isinstance(base.get("transformer_layers_per_block"), list) or len(set(depths)) > 1:
        cfg["transformer_layers_per_block"] = depths
        up_depths = [_count(s, f"output_blocks.{lv * (m + 1)}.1.transformer_blocks.") or 1 for lv in range(len(widths))]
        if up_depths != depths[::-1]:
            cfg["reverse_transformer_layers_per_block"] = up_depths
    else:
        cfg["transformer_layers_per_block"] = depths[0]
    attn = next(k for k in s if k.endswith("transformer_blocks.0.attn2.to_k.weight"))
    cfg["cross_attention_dim"] = s[attn][1]
    cfg["use_linear_projection"] = len(next(v for k, v in s.items() if k.endswith(".proj_in.weight"))) == 2
    if family == Family.SD1:
        cfg["attention_head_dim"] = 8
    else:
        cfg["attention_head_dim"] = [_heads(w) for w in widths]
    if "label_emb.0.0.weight" in s:
        cfg["projection_class_embeddings_input_dim"] = s["label_emb.0.0.weight"][1]
    return cfg


def infer_vae(shapes: Shapes, base: Mapping) -> dict:
    s = {k[len(VAE_PREFIX) :]: v for k, v in shapes.items() if k.startswith(VAE_PREFIX)}
    levels = _count(s, "encoder.down.")
    cfg = dict(base)
    cfg["block_out_channels"] = [s[f"encoder.down.{i}.block.0.conv1.weight"][0] for i in range(levels)]
    cfg["layers_per_block"] = _count(s, "encoder.down.0.block.")
    cfg["down_block_types"] = ["DownEncoderBlock2D"] * levels
    cfg["up_block_types"] = ["UpDecoderBlock2D"] * levels
    cfg["in_channels"] = s["encoder.conv_in.weight"][1]
    cfg["out_channels"] = s["decoder.conv_out.weight"][0]
    cfg["latent_channels"] = s["post_quant_conv.weight"][0]
    return cfg


def infer_text_encoder(shapes: Shapes, family: Family, prefix: str, kind: str, base: Mapping) -> dict:
    s = {k[len(prefix) :]: v for k, v in shapes.items() if k.startswith(prefix)}
    cfg = dict(base)
    if kind == "clip":
        vocab, width = s["embeddings.token_embedding.weight"]
        cfg["max_position_embeddings"] = s["embeddings.position_embedding.weight"][0]
        cfg["num_hidden_layers"] = _count(s, "encoder.layers.")
        cfg["intermediate_size"] = s["encoder.layers.0.mlp.fc1.weight"][0]
    else:
        vocab, width = s["token_embedding.weight"]
        cfg["max_position_embeddings"] = s["positional_embedding"][0]
        blocks = _count(s, "transformer.resblocks.")
        cfg["num_hidden_layers"] = sd2_text_layers(blocks) if family == Family.SD2 else blocks
        cfg["intermediate_size"] = s["transformer.resblocks.0.mlp.c_fc.weight"][0]
        if "text_projection" in s:
            cfg["projection_dim"] = s["text_projection"][1]
    cfg["vocab_size"], cfg["hidden_size"] = vocab, width
    cfg["num_attention_heads"] = _heads(width)
    return cfg


def infer_configs(
    shapes: Shapes, family: Family, prediction: str = "epsilon", zero_snr: bool = False
) -> dict[str, dict]:
    """Component configs for the checkpoint whose LDM keys have these shapes (``scheduler`` and ``model_index`` too).

    The scheduler's ``prediction_type`` is set from ``prediction`` ("epsilon" or "v"); ``zero_snr`` (a zero-terminal-
    SNR model, ``ldm_family.zero_terminal_snr``) sets ``rescale_betas_zero_snr``.
    """
    configs = shipped_configs(shipped_config_name(family, prediction))
    configs["unet"] = infer_unet(shapes, family, configs["unet"])
    configs["vae"] = infer_vae(shapes, configs["vae"])
    for comp, prefix, kind in TEXT_ENCODERS[family]:
        configs[comp] = infer_text_encoder(shapes, family, prefix, kind, configs[comp])
    configs["scheduler"]["prediction_type"] = "v_prediction" if prediction == "v" else "epsilon"
    if zero_snr:
        configs["scheduler"]["rescale_betas_zero_snr"] = True
    return configs
