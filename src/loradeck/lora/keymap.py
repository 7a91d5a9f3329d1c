"""Canonical (kohya) LoRA module names, produced explicitly from model configs, mapped onto our loaded modules.

Names are never derived from ``named_modules()``: transformers 5 flattened ``CLIPTextModel`` (no ``text_model``), and
SDXL LoRAs name the U-Net after the original SGM model (``input_blocks_4_1_…``) although we load a diffusers
``UNet2DConditionModel``. So the grammar of docs/reference/lora-formats.md §4 is written out here from the config numbers (block types,
layers per block, transformer depth, text-encoder layer count), and every name points at a ``ModuleRef``: which
component ("unet", "te1", "te2") and the dotted module path inside OUR model.

Canonical spelling: SD1/SD2/demo U-Net ``lora_unet_down_blocks_0_attentions_0_…`` (diffusers-style), SDXL U-Net
``lora_unet_input_blocks_4_1_…`` (SGM-style); text encoders ``lora_te_text_model_encoder_layers_N_…`` (SDXL
``lora_te1_``/``lora_te2_``). The other spelling of each U-Net name is accepted as an alias.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from loradeck.arch import arch_of
from loradeck.families import Family

ATTN_LEAVES = (
    "attn1.to_q",
    "attn1.to_k",
    "attn1.to_v",
    "attn1.to_out.0",
    "attn2.to_q",
    "attn2.to_k",
    "attn2.to_v",
    "attn2.to_out.0",
    "ff.net.0.proj",
    "ff.net.2",
)
TE_LEAVES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2")
RESNET_CONV = ("conv1", "conv2", "time_emb_proj")  # + conv_shortcut where channels change
RESNET_SGM = {
    "conv1": "in_layers_2",
    "conv2": "out_layers_3",
    "time_emb_proj": "emb_layers_1",
    "conv_shortcut": "skip_connection",
    "norm1": "in_layers_0",
    "norm2": "out_layers_0",
}


DENOISERS = ("unet", "transformer")  # components that take the `unet` multiplier of `<lora:name:te:unet>`


@dataclass(frozen=True)
class ModuleRef:
    """A module of our loaded models: component ("unet" | "transformer" | "te1" | "te2") and dotted path inside it.

    ``rows``: set when the LoRA module addresses a fused weight that our model holds split (Flux's ``qkv`` and
    ``linear1`` are to_q/to_k/to_v/proj_mlp in diffusers): the (start, stop) segments of the LoRA's ΔW rows,
    concatenated, that make this module's rows; ``total`` is the fused weight's row count the LoRA must have.
    """

    component: str
    path: str
    rows: tuple[tuple[int, int], ...] | None = None
    total: int | None = None
    unit: int | None = None  # the fused weight's input width (Flux's D) the rows were counted in

    def rows_for(self, in_features: int, out_rows: int) -> tuple[tuple[int, int], ...] | None:
        """``rows`` for a LoRA module of another width than the keymap's (a file converted without its model):
        boundaries scale with D, and the one at the fused weight's end stays at the module's last row."""
        if self.rows is None or self.unit is None or self.total is None or in_features == self.unit:
            return self.rows
        f = in_features / self.unit
        return tuple((out_rows if a == self.total else round(a * f), out_rows if b == self.total else round(b * f))
                     for a, b in self.rows)  # fmt: skip


@dataclass
class KeyMap:
    """Canonical kohya name → ModuleRef for one model family, plus accepted alternative spellings."""

    family: Family
    modules: dict[str, ModuleRef] = field(default_factory=dict)  # the kohya-trained set (counted in tests)
    conv_modules: dict[str, ModuleRef] = field(default_factory=dict)  # LoCon additions (conv_dim)
    extra_modules: dict[str, ModuleRef] = field(default_factory=dict)  # norms, conv_in/out, embeddings (LyCORIS full)
    aliases: dict[str, str] = field(default_factory=dict)  # other spelling → canonical name
    # a canonical name whose weight our model holds split → every piece (each ModuleRef has ``rows``)
    fused: dict[str, tuple[ModuleRef, ...]] = field(default_factory=dict)
    # a name addressing one piece of a fused weight (diffusers' to_q of Flux's qkv) → (fused canonical name, rows)
    part_of: dict[str, tuple[str, tuple[int, int]]] = field(default_factory=dict)

    def resolve(self, name: str) -> ModuleRef | None:
        name = self.aliases.get(name, name)
        return self.modules.get(name) or self.conv_modules.get(name) or self.extra_modules.get(name)

    def resolve_all(self, name: str) -> tuple[ModuleRef, ...]:
        """Every module the LoRA module ``name`` changes: one, or the pieces of a fused weight."""
        canon = self.aliases.get(name, name)
        if canon in self.fused:
            return self.fused[canon]
        ref = self.resolve(name)
        return () if ref is None else (ref,)

    def canonical(self, name: str) -> str:
        return self.aliases.get(name, name)

    def all_modules(self) -> dict[str, ModuleRef]:
        return {**self.extra_modules, **self.conv_modules, **self.modules}


def _per_block(value, n: int) -> list[int]:
    return list(value) if isinstance(value, list | tuple) else [value] * n


@dataclass(frozen=True)
class _Site:
    """One U-Net module with its diffusers path, its SGM path and what kind of module it is."""

    diffusers: str  # dotted diffusers path
    sgm: str  # underscore SGM name without prefix
    kind: str  # "attn" (kohya default set) | "conv" (conv_dim set) | "extra"


def _attention_sites(dpath: str, sgm: str, depth: int) -> list[_Site]:
    sites = [_Site(f"{dpath}.proj_in", f"{sgm}_proj_in", "attn"), _Site(f"{dpath}.proj_out", f"{sgm}_proj_out", "attn")]
    sites.append(_Site(f"{dpath}.norm", f"{sgm}_norm", "extra"))
    for k in range(depth):
        for leaf in ATTN_LEAVES:
            sites.append(
                _Site(f"{dpath}.transformer_blocks.{k}.{leaf}", f"{sgm}_transformer_blocks_{k}_{_u(leaf)}", "attn")
            )
        for norm in ("norm1", "norm2", "norm3"):
            sites.append(
                _Site(f"{dpath}.transformer_blocks.{k}.{norm}", f"{sgm}_transformer_blocks_{k}_{norm}", "extra")
            )
    return sites


def _resnet_sites(dpath: str, sgm: str, shortcut: bool) -> list[_Site]:
    leaves = list(RESNET_CONV) + (["conv_shortcut"] if shortcut else [])
    sites = [_Site(f"{dpath}.{leaf}", f"{sgm}_{RESNET_SGM[leaf]}", "conv") for leaf in leaves]
    sites += [_Site(f"{dpath}.{n}", f"{sgm}_{RESNET_SGM[n]}", "extra") for n in ("norm1", "norm2")]
    return sites


def _u(path: str) -> str:
    return path.replace(".", "_")


def unet_sites(config: dict) -> list[_Site]:
    """Every LoRA-targetable U-Net module of a diffusers UNet2DConditionModel config, in kohya's order."""
    down, up = config["down_block_types"], config["up_block_types"]
    chans = list(config["block_out_channels"])
    n = len(down)
    lpb = _per_block(config.get("layers_per_block", 2), n)
    tlpb = _per_block(config.get("transformer_layers_per_block", 1) or 1, n)
    rev_t = config.get("reverse_transformer_layers_per_block") or list(reversed(tlpb))
    rev_t = _per_block(rev_t, n)
    sites: list[_Site] = []
    sgm_in = 1  # input_blocks_0 is conv_in
    for i, btype in enumerate(down):
        for j in range(lpb[i]):
            cin = chans[0] if (i == 0 and j == 0) else (chans[i - 1] if j == 0 else chans[i])
            sites += _resnet_sites(f"down_blocks.{i}.resnets.{j}", f"input_blocks_{sgm_in}_0", cin != chans[i])
            if "CrossAttn" in btype:
                sites += _attention_sites(f"down_blocks.{i}.attentions.{j}", f"input_blocks_{sgm_in}_1", tlpb[i])
            sgm_in += 1
        if i < n - 1:
            sites.append(_Site(f"down_blocks.{i}.downsamplers.0.conv", f"input_blocks_{sgm_in}_0_op", "conv"))
            sgm_in += 1
    mid = config.get("mid_block_type") or "UNetMidBlock2DCrossAttn"
    sites += _resnet_sites("mid_block.resnets.0", "middle_block_0", False)
    if "CrossAttn" in mid:
        sites += _attention_sites("mid_block.attentions.0", "middle_block_1", tlpb[-1])
    sites += _resnet_sites("mid_block.resnets.1", "middle_block_2", False)
    sgm_out = 0
    for i, btype in enumerate(up):
        layers = list(reversed(lpb))[i] + 1
        for j in range(layers):
            sites += _resnet_sites(f"up_blocks.{i}.resnets.{j}", f"output_blocks_{sgm_out}_0", True)
            if "CrossAttn" in btype:
                sites += _attention_sites(f"up_blocks.{i}.attentions.{j}", f"output_blocks_{sgm_out}_1", rev_t[i])
            if j == layers - 1 and i < n - 1:
                slot = 2 if "CrossAttn" in btype else 1
                sites.append(_Site(f"up_blocks.{i}.upsamplers.0.conv", f"output_blocks_{sgm_out}_{slot}_conv", "conv"))
            sgm_out += 1
    sites += [
        _Site("conv_in", "input_blocks_0_0", "extra"),
        _Site("conv_out", "out_2", "extra"),
        _Site("conv_norm_out", "out_0", "extra"),
        _Site("time_embedding.linear_1", "time_embed_0", "extra"),
        _Site("time_embedding.linear_2", "time_embed_2", "extra"),
    ]
    if config.get("addition_embed_type") == "text_time":
        sites += [
            _Site("add_embedding.linear_1", "label_emb_0_0", "extra"),
            _Site("add_embedding.linear_2", "label_emb_0_2", "extra"),
        ]
    return sites


def add_unet(keymap: KeyMap, config: dict, sgm_canonical: bool) -> None:
    """Register the U-Net names of ``config``; canonical spelling SGM (SDXL) or diffusers-style (SD1/SD2)."""
    target = {"attn": keymap.modules, "conv": keymap.conv_modules, "extra": keymap.extra_modules}
    for site in unet_sites(config):
        ref = ModuleRef("unet", site.diffusers)
        d_name, s_name = "lora_unet_" + _u(site.diffusers), "lora_unet_" + site.sgm
        canon, alias = (s_name, d_name) if sgm_canonical else (d_name, s_name)
        target[site.kind][canon] = ref
        keymap.aliases[alias] = canon


def add_text_encoder(keymap: KeyMap, prefix: str, component: str, num_layers: int, has_text_model: bool) -> None:
    """Register ``{prefix}_text_model_encoder_layers_N_X`` for a CLIP text encoder with ``num_layers`` layers.

    ``has_text_model``: transformers 5 ``CLIPTextModelWithProjection`` keeps a ``text_model`` submodule,
    ``CLIPTextModel`` does not; the canonical name is the same either way.
    """
    root = "text_model." if has_text_model else ""
    for i in range(num_layers):
        for leaf in TE_LEAVES:
            name = f"{prefix}_text_model_encoder_layers_{i}_{_u(leaf)}"
            keymap.modules[name] = ModuleRef(component, f"{root}encoder.layers.{i}.{leaf}")
            keymap.aliases[f"{prefix}_encoder_layers_{i}_{_u(leaf)}"] = name  # naive transformers-5 spelling
        for norm in ("layer_norm1", "layer_norm2"):
            name = f"{prefix}_text_model_encoder_layers_{i}_{norm}"
            keymap.extra_modules[name] = ModuleRef(component, f"{root}encoder.layers.{i}.{norm}")
    keymap.extra_modules[f"{prefix}_text_model_final_layer_norm"] = ModuleRef(component, f"{root}final_layer_norm")


def build_keymap(
    family: Family, unet_config: dict, te_configs: dict[str, dict], te_has_text_model: dict[str, bool] | None = None
) -> KeyMap:
    """KeyMap for a family from its U-Net config and text-encoder configs ({"te1": cfg, "te2": cfg})."""
    km = KeyMap(family=family)
    arch = arch_of(family)
    add_unet(km, unet_config, sgm_canonical=arch is not None and arch.unet_names == "sgm")
    has_tm = te_has_text_model or {}
    if family is Family.SDXL:
        add_text_encoder(km, "lora_te1", "te1", te_configs["te1"]["num_hidden_layers"], has_tm.get("te1", False))
        if "te2" in te_configs:
            add_text_encoder(km, "lora_te2", "te2", te_configs["te2"]["num_hidden_layers"], has_tm.get("te2", True))
    elif "te1" in te_configs:
        add_text_encoder(km, "lora_te", "te1", te_configs["te1"]["num_hidden_layers"], has_tm.get("te1", False))
    return km


def _shipped_config(folder: str, sub: str) -> dict:
    text = (resources.files("loradeck") / "configs" / folder / sub / "config.json").read_text()
    return json.loads(text)


def demo_config(sub: str) -> dict:
    """A config of the embedded demo model (package data: read, not imported, so lora/ stays below demo/)."""
    return json.loads((resources.files("loradeck") / "demo" / "model" / sub / "config.json").read_text())


def _has_text_model(config: dict) -> bool:
    return "CLIPTextModelWithProjection" in (config.get("architectures") or [])


def keymap_for_family(family: Family) -> KeyMap:
    """KeyMap from the configs shipped for ``family`` (sd1, sd2, sdxl, flux)."""
    if family is Family.DEMO:
        return build_keymap(family, demo_config("unet"), {"te1": demo_config("text_encoder")}, {"te1": False})
    if family is Family.FLUX:  # Flux.1-dev's sizes, shipped as data (configs/flux)
        from loradeck.lora.flux_keys import build_flux_keymap

        return build_flux_keymap(
            _shipped_config("flux", "transformer"),
            clip_layers=_shipped_config("flux", "text_encoder")["num_hidden_layers"],
            t5_layers=_shipped_config("flux", "text_encoder_2")["num_layers"],
        )
    folder = family.config_dir
    if folder is None:
        raise ValueError(f"no shipped config for family {family.value!r}; use keymap_from_models")
    unet = _shipped_config(folder, "unet")
    tes = {"te1": _shipped_config(folder, "text_encoder")}
    if family is Family.SDXL:
        tes["te2"] = _shipped_config(folder, "text_encoder_2")
    return build_keymap(family, unet, tes, {k: _has_text_model(v) for k, v in tes.items()})


def keymap_from_models(family: Family, unet: Any, text_encoders: Mapping[str, Any]) -> KeyMap:
    """KeyMap from loaded models' configs (``unet.config``; each text encoder's ``config.num_hidden_layers``).

    Only config numbers and the class (``text_model`` attribute) are read, never the module tree's names.
    """
    tes = {k: {"num_hidden_layers": m.config.num_hidden_layers} for k, m in text_encoders.items()}
    has_tm = {k: hasattr(m, "text_model") for k, m in text_encoders.items()}
    return build_keymap(family, dict(unet.config), tes, has_tm)
