"""Key names of single-file ("LDM", A1111/Civitai) checkpoints and their diffusers/transformers-5 equivalents.

A single-file Stable Diffusion checkpoint keeps the names of the original CompVis/Stability code:
``model.diffusion_model.input_blocks.1.1.proj_in.weight`` for the U-Net, ``first_stage_model.decoder.up.0...`` for
the VAE, and per family a text-encoder prefix. Our models are diffusers ``UNet2DConditionModel`` /
``AutoencoderKL`` and transformers-5 ``CLIPTextModel`` (no ``text_model.`` level) / ``CLIPTextModelWithProjection``
(which keeps ``text_model.``). This module maps one layout onto the other, both ways, from the key names alone.

The mapping is a list of ``KeyRule``: one LDM tensor ↔ one or three diffusers tensors and the operation between
them (copy, transpose, q/k/v packing, 1×1 conv ↔ linear). Keys the models do not use (EMA copies, ``logit_scale``,
OpenCLIP's last block in SD 2.x, ``position_ids``) go to the ``"extra"`` component untouched, so that
``to_ldm(to_diffusers(sd))`` gives back exactly ``sd``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from loradeck.families import Family

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
EXTRA = "extra"

# (component, LDM prefix, text-encoder kind) per family. "clip": Hugging Face CLIP layout inside the checkpoint;
# "openclip": OpenCLIP layout (packed in_proj); "openclip_proj": the same with text_projection kept (SDXL TE2).
TEXT_ENCODERS: dict[Family, tuple[tuple[str, str, str], ...]] = {
    Family.SD1: (("text_encoder", "cond_stage_model.transformer.text_model.", "clip"),),
    Family.SD2: (("text_encoder", "cond_stage_model.model.", "openclip"),),
    Family.SDXL: (
        ("text_encoder", "conditioner.embedders.0.transformer.text_model.", "clip"),
        ("text_encoder_2", "conditioner.embedders.1.model.", "openclip_proj"),
    ),
}

COPY, TRANSPOSE, QKV, CONV1X1 = "copy", "transpose", "qkv", "conv1x1"


@dataclass(frozen=True)
class KeyRule:
    """One LDM tensor and the diffusers tensor(s) it becomes (three for a packed q/k/v ``in_proj``)."""

    ldm_key: str
    component: str
    keys: tuple[str, ...]
    op: str = COPY


# ------------------------------------------------------------------------------------------------ name tables
class _PrefixTable:
    """Pairs of dotted prefixes (LDM ↔ diffusers); each pair may carry a table for the rest of the name."""

    def __init__(self) -> None:
        self.fwd: dict[str, tuple[str, _PrefixTable | None]] = {}
        self.back: dict[str, tuple[str, _PrefixTable | None]] = {}

    def add(self, ldm: str, diffusers: str, sub: _PrefixTable | None = None) -> None:
        self.fwd[ldm] = (diffusers, sub)
        self.back[diffusers] = (ldm, sub)

    def translate(self, key: str, to_diffusers: bool) -> str | None:
        """Replace the longest known dotted prefix of ``key``; the remainder goes through the pair's sub-table."""
        table = self.fwd if to_diffusers else self.back
        parts = key.split(".")
        for n in range(len(parts), 0, -1):
            hit = table.get(".".join(parts[:n]))
            if hit is None:
                continue
            new, sub = hit
            rest = ".".join(parts[n:])
            if sub is not None and rest:
                rest = sub.translate(rest, to_diffusers) or rest
            return f"{new}.{rest}" if rest else new
        return None


def _renames(pairs: Iterable[tuple[str, str]]) -> _PrefixTable:
    table = _PrefixTable()
    for a, b in pairs:
        table.add(a, b)
    return table


_UNET_RESNET = _renames(
    [
        ("in_layers.0", "norm1"),
        ("in_layers.2", "conv1"),
        ("emb_layers.1", "time_emb_proj"),
        ("out_layers.0", "norm2"),
        ("out_layers.3", "conv2"),
        ("skip_connection", "conv_shortcut"),
    ]
)
_VAE_RESNET = _renames([(n, n) for n in ("norm1", "conv1", "norm2", "conv2")] + [("nin_shortcut", "conv_shortcut")])
_VAE_ATTN = _renames([("norm", "group_norm"), ("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("proj_out", "to_out.0")])
_VAE_ATTN_LINEAR = {"to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight"}


# ------------------------------------------------------------------------------------------------ U-Net
@dataclass(frozen=True)
class UNetLayout:
    """What the name mapping needs to know about a U-Net: levels, resnets per level, which levels attend."""

    down_attn: tuple[bool, ...]
    up_attn: tuple[bool, ...]
    layers_per_block: int

    @property
    def levels(self) -> int:
        return len(self.down_attn)

    @classmethod
    def from_config(cls, config: Mapping) -> UNetLayout:
        down = tuple(t.startswith("CrossAttn") for t in config["down_block_types"])
        up = tuple(t.startswith("CrossAttn") for t in config["up_block_types"])
        return cls(down, up, int(config.get("layers_per_block", 2)))

    @classmethod
    def from_ldm_keys(cls, keys: Iterable[str]) -> UNetLayout:
        """Keys without the ``model.diffusion_model.`` prefix. The first downsampler sits at index m+1."""
        inputs: dict[int, set[str]] = {}
        outputs: dict[int, set[str]] = {}
        for k in keys:
            p = k.split(".")
            if p[0] in ("input_blocks", "output_blocks") and len(p) > 3:
                (inputs if p[0] == "input_blocks" else outputs).setdefault(int(p[1]), set()).add(f"{p[2]}.{p[3]}")
        if not inputs:
            raise ValueError("no input_blocks keys")
        ops = sorted(i for i, subs in inputs.items() if "0.op" in subs)
        m = ops[0] - 1 if ops else max(inputs)
        levels = len(ops) + 1
        down = tuple(any(s.startswith("1.") for s in inputs.get(1 + lv * (m + 1), ())) for lv in range(levels))
        up = tuple(
            any(s.startswith("1.") and s != "1.conv" for s in outputs.get(lv * (m + 1), ())) for lv in range(levels)
        )
        return cls(down, up, m)

    @classmethod
    def from_diffusers_keys(cls, keys: Iterable[str]) -> UNetLayout:
        down: dict[int, bool] = {}
        up: dict[int, bool] = {}
        m = 0
        for k in keys:
            p = k.split(".")
            if p[0] in ("down_blocks", "up_blocks") and len(p) > 3:
                target = down if p[0] == "down_blocks" else up
                lv = int(p[1])
                target[lv] = target.get(lv, False) or p[2] == "attentions"
                if p[0] == "down_blocks" and p[2] == "resnets":
                    m = max(m, int(p[3]) + 1)
        return cls(tuple(down[i] for i in sorted(down)), tuple(up[i] for i in sorted(up)), m)


def _unet_table(layout: UNetLayout) -> _PrefixTable:
    t = _PrefixTable()
    for ldm, dif in [
        ("time_embed.0", "time_embedding.linear_1"),
        ("time_embed.2", "time_embedding.linear_2"),
        ("label_emb.0.0", "add_embedding.linear_1"),
        ("label_emb.0.2", "add_embedding.linear_2"),
        ("input_blocks.0.0", "conv_in"),
        ("out.0", "conv_norm_out"),
        ("out.2", "conv_out"),
        ("middle_block.1", "mid_block.attentions.0"),
    ]:
        t.add(ldm, dif)
    t.add("middle_block.0", "mid_block.resnets.0", _UNET_RESNET)
    t.add("middle_block.2", "mid_block.resnets.1", _UNET_RESNET)
    m, levels = layout.layers_per_block, layout.levels
    for lv in range(levels):
        for j in range(m):
            k = 1 + lv * (m + 1) + j
            t.add(f"input_blocks.{k}.0", f"down_blocks.{lv}.resnets.{j}", _UNET_RESNET)
            if layout.down_attn[lv]:
                t.add(f"input_blocks.{k}.1", f"down_blocks.{lv}.attentions.{j}")
        if lv < levels - 1:
            t.add(f"input_blocks.{(lv + 1) * (m + 1)}.0.op", f"down_blocks.{lv}.downsamplers.0.conv")
        for j in range(m + 1):
            k = lv * (m + 1) + j
            t.add(f"output_blocks.{k}.0", f"up_blocks.{lv}.resnets.{j}", _UNET_RESNET)
            if layout.up_attn[lv]:
                t.add(f"output_blocks.{k}.1", f"up_blocks.{lv}.attentions.{j}")
            if lv < levels - 1 and j == m:
                t.add(f"output_blocks.{k}.{2 if layout.up_attn[lv] else 1}.conv", f"up_blocks.{lv}.upsamplers.0.conv")
    return t


def ldm_unet_module_to_diffusers(name: str, unet_config: Mapping) -> str | None:
    """``input_blocks.4.1.transformer_blocks.0.attn1.to_q`` → ``down_blocks.1.attentions.0.transformer_blocks...``.

    Works on module names and parameter keys, with or without the ``model.diffusion_model.`` prefix; None when the
    name is not part of a U-Net with this config.
    """
    name = name.removeprefix(UNET_PREFIX)
    return _unet_table(UNetLayout.from_config(unet_config)).translate(name, to_diffusers=True)


def diffusers_unet_module_to_ldm(name: str, unet_config: Mapping) -> str | None:
    """The inverse of ``ldm_unet_module_to_diffusers`` (without the ``model.diffusion_model.`` prefix)."""
    return _unet_table(UNetLayout.from_config(unet_config)).translate(name, to_diffusers=False)


# ------------------------------------------------------------------------------------------------ VAE
def _vae_levels_from_keys(keys: Iterable[str], ldm: bool) -> tuple[int, int]:
    """(levels, resnets per encoder level) from the encoder's keys: ``encoder.down[_blocks].I.block|resnets.J``."""
    down, block = ("down", "block") if ldm else ("down_blocks", "resnets")
    levels, m = 0, 0
    for k in keys:
        p = k.split(".")
        if len(p) > 4 and p[0] == "encoder" and p[1] == down and p[3] == block:
            levels = max(levels, int(p[2]) + 1)
            m = max(m, int(p[4]) + 1)
    return levels, m


def _vae_table(levels: int, m: int) -> _PrefixTable:
    t = _PrefixTable()
    for name in ("encoder.conv_in", "encoder.conv_out", "decoder.conv_in", "decoder.conv_out"):
        t.add(name, name)
    t.add("quant_conv", "quant_conv")
    t.add("post_quant_conv", "post_quant_conv")
    for side in ("encoder", "decoder"):
        t.add(f"{side}.norm_out", f"{side}.conv_norm_out")
        t.add(f"{side}.mid.block_1", f"{side}.mid_block.resnets.0", _VAE_RESNET)
        t.add(f"{side}.mid.block_2", f"{side}.mid_block.resnets.1", _VAE_RESNET)
        t.add(f"{side}.mid.attn_1", f"{side}.mid_block.attentions.0", _VAE_ATTN)
    for i in range(levels):
        for j in range(m):
            t.add(f"encoder.down.{i}.block.{j}", f"encoder.down_blocks.{i}.resnets.{j}", _VAE_RESNET)
        for j in range(m + 1):  # the decoder has one resnet more per level, and counts its levels backwards
            t.add(f"decoder.up.{levels - 1 - i}.block.{j}", f"decoder.up_blocks.{i}.resnets.{j}", _VAE_RESNET)
        if i < levels - 1:
            t.add(f"encoder.down.{i}.downsample.conv", f"encoder.down_blocks.{i}.downsamplers.0.conv")
            t.add(f"decoder.up.{levels - 1 - i}.upsample.conv", f"decoder.up_blocks.{i}.upsamplers.0.conv")
    return t


# ------------------------------------------------------------------------------------------------ text encoders
_OPENCLIP_TOP = {
    "token_embedding.weight": "embeddings.token_embedding.weight",
    "positional_embedding": "embeddings.position_embedding.weight",
    "ln_final.weight": "final_layer_norm.weight",
    "ln_final.bias": "final_layer_norm.bias",
}
_OPENCLIP_BLOCK = _renames(
    [
        ("ln_1", "layer_norm1"),
        ("ln_2", "layer_norm2"),
        ("attn.out_proj", "self_attn.out_proj"),
        ("mlp.c_fc", "mlp.fc1"),
        ("mlp.c_proj", "mlp.fc2"),
    ]
)


def sd2_text_layers(resblocks: int) -> int:
    """Layers SD 2.x runs of an OpenCLIP-H text encoder with this many blocks.

    SD 2.x conditions on the penultimate block, so the last block is never run (diffusers' SD 2 text encoder has
    23 of OpenCLIP-H's 24). A file with exactly 23 blocks was written from a diffusers model and uses them all.
    """
    return resblocks if resblocks == 23 else resblocks - 1


def _openclip_rule(local: str, prefix: str, component: str, layers: int, proj: bool) -> KeyRule | None:
    head = "text_model." if proj else ""
    if local in _OPENCLIP_TOP:
        return KeyRule(prefix + local, component, (head + _OPENCLIP_TOP[local],))
    if local == "text_projection":
        # OpenCLIP multiplies x @ P ([width, proj]); a Linear stores [proj, width].
        return KeyRule(prefix + local, component, ("text_projection.weight",), TRANSPOSE) if proj else None
    p = local.split(".")
    if len(p) < 5 or p[:2] != ["transformer", "resblocks"] or int(p[2]) >= layers:
        return None
    base = f"{head}encoder.layers.{p[2]}."
    rest = ".".join(p[3:])
    if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
        kind = rest.rsplit("_", 1)[1]
        keys = tuple(f"{base}self_attn.{x}_proj.{kind}" for x in "qkv")
        return KeyRule(prefix + local, component, keys, QKV)
    new = _OPENCLIP_BLOCK.translate(rest, to_diffusers=True)
    return KeyRule(prefix + local, component, (base + new,)) if new else None


def _openclip_layers(locals_: Iterable[str], family: Family) -> int:
    blocks = {int(k.split(".")[2]) for k in locals_ if k.startswith("transformer.resblocks.")}
    count = max(blocks) + 1 if blocks else 0
    return sd2_text_layers(count) if family == Family.SD2 else count


def _openclip_to_ldm(key: str, prefix: str, proj: bool) -> tuple[str, int] | None:
    """diffusers key → (LDM key, q/k/v index or -1)."""
    if proj:
        if key == "text_projection.weight":
            return prefix + "text_projection", -1
        key = key.removeprefix("text_model.")
    for ldm, dif in _OPENCLIP_TOP.items():
        if key == dif:
            return prefix + ldm, -1
    p = key.split(".")
    if len(p) < 5 or p[:2] != ["encoder", "layers"]:
        return None
    base = f"{prefix}transformer.resblocks.{p[2]}."
    rest = ".".join(p[3:])
    if rest.startswith("self_attn.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
        which, kind = rest.split(".")[1][0], rest.split(".")[2]
        return f"{base}attn.in_proj_{kind}", "qkv".index(which)
    new = _OPENCLIP_BLOCK.translate(rest, to_diffusers=False)
    return (base + new, -1) if new else None


# ------------------------------------------------------------------------------------------------ plans
def _check_family(family: Family) -> None:
    if family not in TEXT_ENCODERS:
        raise ValueError(f"no single-file key layout for family {family.value!r}")


def plan_to_diffusers(ldm_keys: Iterable[str], family: Family) -> tuple[list[KeyRule], list[str]]:
    """The rules that turn these LDM keys into diffusers components, and the keys no model uses."""
    _check_family(family)
    keys = list(ldm_keys)
    unet_local = [k[len(UNET_PREFIX) :] for k in keys if k.startswith(UNET_PREFIX)]
    vae_local = [k[len(VAE_PREFIX) :] for k in keys if k.startswith(VAE_PREFIX)]
    unet_t = _unet_table(UNetLayout.from_ldm_keys(unet_local))
    vae_t = _vae_table(*_vae_levels_from_keys(vae_local, ldm=True))
    encoders = TEXT_ENCODERS[family]
    openclip_layers = {
        comp: _openclip_layers((k[len(pre) :] for k in keys if k.startswith(pre)), family)
        for comp, pre, kind in encoders
        if kind.startswith("openclip")
    }
    rules: list[KeyRule] = []
    extra: list[str] = []
    for key in keys:
        rule = None
        if key.startswith(UNET_PREFIX):
            new = unet_t.translate(key[len(UNET_PREFIX) :], to_diffusers=True)
            rule = KeyRule(key, "unet", (new,)) if new else None
        elif key.startswith(VAE_PREFIX):
            new = vae_t.translate(key[len(VAE_PREFIX) :], to_diffusers=True)
            if new:
                op = CONV1X1 if any(new.endswith("attentions.0." + s) for s in _VAE_ATTN_LINEAR) else COPY
                rule = KeyRule(key, "vae", (new,), op)
        else:
            for comp, pre, kind in encoders:
                if not key.startswith(pre):
                    continue
                local = key[len(pre) :]
                if kind == "clip":
                    ok = (
                        local.startswith(("embeddings.", "encoder.", "final_layer_norm."))
                        and "position_ids" not in local
                    )
                    rule = KeyRule(key, comp, (local,)) if ok else None
                else:
                    rule = _openclip_rule(local, pre, comp, openclip_layers[comp], kind == "openclip_proj")
                break
        if rule is None:
            extra.append(key)
        else:
            rules.append(rule)
    return rules, extra


def plan_to_ldm(components: Mapping[str, Iterable[str]], family: Family) -> list[KeyRule]:
    """The rules that turn diffusers component keys back into LDM keys (``extra`` keys are not covered)."""
    _check_family(family)
    rules: list[KeyRule] = []
    unet = list(components.get("unet", ()))
    unet_t = _unet_table(UNetLayout.from_diffusers_keys(unet))
    for key in unet:
        ldm = unet_t.translate(key, to_diffusers=False)
        if ldm is None:
            raise KeyError(f"unet key {key!r} has no single-file name")
        rules.append(KeyRule(UNET_PREFIX + ldm, "unet", (key,)))
    vae = list(components.get("vae", ()))
    vae_t = _vae_table(*_vae_levels_from_keys(vae, ldm=False))
    for key in vae:
        ldm = vae_t.translate(key, to_diffusers=False)
        if ldm is None:
            raise KeyError(f"vae key {key!r} has no single-file name")
        op = CONV1X1 if any(key.endswith("attentions.0." + s) for s in _VAE_ATTN_LINEAR) else COPY
        rules.append(KeyRule(VAE_PREFIX + ldm, "vae", (key,), op))
    for comp, pre, kind in TEXT_ENCODERS[family]:
        packed: dict[str, list[str | None]] = {}
        for key in components.get(comp, ()):
            if kind == "clip":
                rules.append(KeyRule(pre + key.removeprefix("text_model."), comp, (key,)))
                continue
            hit = _openclip_to_ldm(key, pre, kind == "openclip_proj")
            if hit is None:
                raise KeyError(f"{comp} key {key!r} has no single-file name")
            ldm, part = hit
            if part < 0:
                op = TRANSPOSE if key == "text_projection.weight" else COPY
                rules.append(KeyRule(ldm, comp, (key,), op))
            else:
                packed.setdefault(ldm, [None, None, None])[part] = key
        for ldm, parts in packed.items():
            if None in parts:
                raise KeyError(f"{comp}: {ldm} needs q, k and v, found {parts}")
            rules.append(KeyRule(ldm, comp, tuple(parts), QKV))  # type: ignore[arg-type]
    return rules


# ------------------------------------------------------------------------------------------------ tensors
def ldm_tensor_to_diffusers(rule: KeyRule, tensor: torch.Tensor) -> list[torch.Tensor]:
    """The diffusers tensor(s) of one LDM tensor (views where possible: no copy)."""
    if rule.op == QKV:
        return list(tensor.chunk(3, dim=0))
    if rule.op == TRANSPOSE:
        return [tensor.t().contiguous()]
    if rule.op == CONV1X1 and tensor.ndim == 4:
        return [tensor[:, :, 0, 0]]
    return [tensor]


def diffusers_tensors_to_ldm(rule: KeyRule, tensors: list[torch.Tensor]) -> torch.Tensor:
    if rule.op == QKV:
        return torch.cat(tensors, dim=0)
    (t,) = tensors
    if rule.op == TRANSPOSE:
        return t.t().contiguous()
    if rule.op == CONV1X1 and t.ndim == 2:
        return t[:, :, None, None]
    return t


def to_diffusers(state_dict: Mapping[str, torch.Tensor], family: Family) -> dict[str, dict[str, torch.Tensor]]:
    """Split an LDM state dict into ``unet``, ``vae``, ``text_encoder`` (, ``text_encoder_2``) and ``extra``."""
    rules, extra = plan_to_diffusers(state_dict.keys(), family)
    out: dict[str, dict[str, torch.Tensor]] = {comp: {} for comp, _, _ in TEXT_ENCODERS[family]}
    out.update(unet={}, vae={})
    for rule in rules:
        for key, t in zip(rule.keys, ldm_tensor_to_diffusers(rule, state_dict[rule.ldm_key]), strict=True):
            out[rule.component][key] = t
    out[EXTRA] = {k: state_dict[k] for k in extra}
    return out


def to_ldm(components: Mapping[str, Mapping[str, torch.Tensor]], family: Family) -> dict[str, torch.Tensor]:
    """Join diffusers component state dicts (and ``extra``, copied as is) into one LDM state dict."""
    rules = plan_to_ldm({c: sd.keys() for c, sd in components.items() if c != EXTRA}, family)
    out = {r.ldm_key: diffusers_tensors_to_ldm(r, [components[r.component][k] for k in r.keys]) for r in rules}
    out.update(components.get(EXTRA, {}))
    return out
