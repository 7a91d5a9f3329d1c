"""Turn a LoRA state dict (any layout) into per-module specs; detect its format and base-model family.

Key layouts accepted (docs/reference/lora-formats.md §1.1): kohya ``lora_unet_…``/``lora_te_…``/``lora_te1_``/``lora_te2_`` module
names (split at the first dot), ``lycoris_`` (U-Net), and dotted diffusers/PEFT paths with ``unet.``,
``text_encoder.``, ``text_encoder_2.`` or raw PEFT ``base_model.model.`` prefixes, whose up/down spellings
(``lora_A/B``, ``lora.up/down``, ``lora_linear_layer``, ``_lora.up``, ``lora_B.default``, processor keys) are
recognised by suffix. Everything is normalised to kohya module names and kohya parameter names.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from loradeck.arch import lora_family_by_names
from loradeck.errors import FormatError
from loradeck.families import Family
from loradeck.formats.embeddings import Embedding, embedding_from_data
from loradeck.lora.spec import LoraFile, ModuleSpec
from loradeck.lora.validate import check_header, check_tensors

KOHYA_PREFIXES = (
    "lora_unet_",
    "lora_te1_",
    "lora_te2_",
    "lora_te3_",  # kohya's Flux/SD3 T5-XXL
    "lora_te_",
    "lora_transformer_",  # OneTrainer's Flux (diffusers paths, kohya spelling)
    "lycoris_",
    "oft_unet_",
)

# kohya-style parameter names → normalised parameter name
_KOHYA_PARAMS = {
    "lora_down.weight": "lora_down.weight",
    "lora_up.weight": "lora_up.weight",
    "lora_mid.weight": "lora_mid.weight",
    "lora_A.weight": "lora_down.weight",
    "lora_B.weight": "lora_up.weight",
    "down.weight": "lora_down.weight",
    "up.weight": "lora_up.weight",
    **{p: p for p in ("alpha", "dora_scale", "scale", "on_input", "weight", "diff", "diff_b", "w_norm", "b_norm")},
    "bias": "bias",  # A1111's extra weight delta (network.py finalize_updown), not the layer's bias: see lora/math.py
    **{p: p for p in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2")},
    **{p: p for p in ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t1", "lokr_t2")},
    **{p: p for p in ("a1.weight", "a2.weight", "b1.weight", "b2.weight", "bm.weight", "oft_blocks", "oft_diag")},
    "rescale": "rescale",
}

# dotted (diffusers / PEFT) keys: (pattern, normalised parameter, module-path rewrite)
_UD = {"up": "lora_up.weight", "down": "lora_down.weight", "B": "lora_up.weight", "A": "lora_down.weight"}
_DOTTED = [
    (
        re.compile(r"^(?P<mod>.+?)(?:\.processor)?\.(?P<proj>to_q|to_k|to_v|to_out)_lora\.(?P<ud>up|down)\.weight$"),
        None,
    ),
    (re.compile(r"^(?P<mod>.+)\.lora_linear_layer\.(?P<ud>up|down)\.weight$"), None),
    (re.compile(r"^(?P<mod>.+)\.lora\.(?P<ud>up|down)\.weight$"), None),
    (re.compile(r"^(?P<mod>.+)_lora\.(?P<ud>up|down)\.weight$"), None),
    (re.compile(r"^(?P<mod>.+)\.lora_(?P<ud>A|B)(?:\.[A-Za-z0-9_]+)?\.weight$"), None),
    (re.compile(r"^(?P<mod>.+)\.lora_magnitude_vector(?:\.[A-Za-z0-9_]+)?(?:\.weight)?$"), "dora_scale"),
    (re.compile(r"^(?P<mod>.+)\.(?P<p>lora_down\.weight|lora_up\.weight|lora_mid\.weight|alpha|dora_scale)$"), "p"),
]


# XLabs' Flux LoRAs: attention-processor layers of the double blocks (1 = image stream, 2 = text stream)
_XLABS = re.compile(
    r"^(?:diffusion_model\.)?double_blocks\.(?P<n>\d+)\.processor\.(?P<what>qkv|proj)_lora(?P<s>[12])\."
    r"(?P<ud>up|down)\.weight$"
)


def split_key(key: str) -> tuple[str, str, str] | None:
    """(kohya module name, normalised parameter, layout) for one file key, or None if not recognised."""
    m = _XLABS.match(key)
    if m:
        stream = "img" if m["s"] == "1" else "txt"
        return f"lora_unet_double_blocks_{m['n']}_{stream}_attn_{m['what']}", _UD[m["ud"]], "xlabs"
    if key.startswith(KOHYA_PREFIXES) and "." in key:
        module, param = key.split(".", 1)
        param = re.sub(r"^lora_([AB])\.[A-Za-z0-9_]+\.weight$", r"lora_\1.weight", param)  # lora_B.default.weight
        norm = _KOHYA_PARAMS.get(param)
        if norm is None:
            return None
        if module.startswith("lycoris_"):
            return "lora_unet_" + module[len("lycoris_") :], norm, "lycoris"
        return module, norm, "kohya"
    for pattern, fixed in _DOTTED:
        m = pattern.match(key)
        if not m:
            continue
        path = m["mod"]
        if "proj" in m.groupdict():
            path = f"{path}.{m['proj']}" + (".0" if m["proj"] == "to_out" else "")
        param = m["p"] if fixed == "p" else (fixed or _UD[m["ud"]])
        name, layout = _dotted_module_name(path)
        return (name, param, layout) if name else None
    return None


# Flux dotted prefixes: ComfyUI/BFL original names, ComfyUI's text encoders, diffusers' transformer
_FLUX_DOTTED = (
    ("diffusion_model.", "lora_unet_", "comfyui"),
    ("text_encoders.clip_l.transformer.", "lora_te1_", "comfyui"),
    ("text_encoders.t5xxl.transformer.", "lora_te3_", "comfyui"),
    ("transformer.", "lora_transformer_", "diffusers"),
)
_FLUX_BARE = re.compile(r"^(double_blocks|single_blocks|img_in|txt_in|time_in|vector_in|guidance_in|final_layer)\b")

_FLUX_DIFFUSERS_ROOTS = re.compile(
    r"^(transformer_blocks|single_transformer_blocks|norm_out|proj_out|x_embedder|context_embedder|time_text_embed)"
    r"(\.|$)"
)


def _dotted_module_name(path: str) -> tuple[str | None, str]:
    layout = "diffusers"
    if path.startswith("base_model.model."):
        path, layout = path[len("base_model.model.") :], "peft"
    for prefix, kohya, flux_layout in _FLUX_DOTTED:
        if path.startswith(prefix):
            rest = path[len(prefix) :]
            name = _te_or_unet(kohya, rest) if kohya == "lora_te1_" else kohya + rest.replace(".", "_")
            return name, flux_layout if layout != "peft" else layout
    if _FLUX_BARE.match(path):
        return "lora_unet_" + path.replace(".", "_"), "comfyui" if layout != "peft" else layout
    if _FLUX_DIFFUSERS_ROOTS.match(path):  # raw PEFT keys of a Flux transformer
        return "lora_transformer_" + path.replace(".", "_"), layout
    for prefix, kohya in (("text_encoder_2.", "lora_te2_"), ("text_encoder.", "lora_te_"), ("unet.", "lora_unet_")):
        if path.startswith(prefix):
            return _te_or_unet(kohya, path[len(prefix) :]), layout
    if path.startswith(("text_model.", "encoder.layers.")):
        return _te_or_unet("lora_te_", path), layout
    if path.startswith(("down_blocks.", "mid_block.", "up_blocks.", "conv_in", "conv_out", "time_embedding.")):
        return _te_or_unet("lora_unet_", path), layout
    return None, layout


def _te_or_unet(prefix: str, path: str) -> str:
    if prefix.startswith("lora_te"):
        path = path.removeprefix("text_model.")
        return prefix + "text_model_" + path.replace(".", "_")
    return prefix + path.replace(".", "_")


def module_kind(params: set[str]) -> str | None:
    """A1111's order: LoRA, LoHa, IA3, LoKr, Full, Norm, GLoRA, OFT."""
    if {"lora_down.weight", "lora_up.weight"} <= params:
        return "lora"
    if {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"} <= params:
        return "loha"
    if "weight" in params:
        return "ia3"
    if ("lokr_w1" in params or "lokr_w1_a" in params) and ("lokr_w2" in params or "lokr_w2_a" in params):
        return "lokr"
    if "diff" in params:
        return "full"
    if "w_norm" in params:
        return "norm"
    if "a1.weight" in params:
        return "glora"
    if "oft_blocks" in params or "oft_diag" in params:
        return "oft"
    return None


def group_keys(keys: list[str]) -> tuple[dict[str, dict[str, str]], list[str], str]:
    """Group file keys by module: {module: {param: key}}, the keys not understood, and the dominant layout."""
    modules: dict[str, dict[str, str]] = {}
    unparsed: list[str] = []
    layouts: dict[str, int] = {}
    for key in keys:
        parts = split_key(key)
        if parts is None:
            unparsed.append(key)
            continue
        name, param, layout = parts
        modules.setdefault(name, {})[param] = key
        layouts[layout] = layouts.get(layout, 0) + 1
    layout = max(layouts, key=lambda name: layouts[name]) if layouts else "unknown"
    return modules, unparsed, layout


def module_in_dim(kind: str, shapes: dict[str, tuple[int, ...]]) -> int | None:
    """Input features of the target module, read from the tensors' shapes (used for family detection)."""
    if kind == "lora":
        return shapes["lora_down.weight"][1]
    if kind == "loha":
        return shapes["hada_w1_b"][1]
    if kind == "lokr" and "lokr_w2" in shapes:
        c = shapes["lokr_w1"][1] if "lokr_w1" in shapes else shapes["lokr_w1_b"][1]
        return c * shapes["lokr_w2"][1]
    if kind == "full" and len(shapes["diff"]) > 1:
        return shapes["diff"][1]
    return None


_FLUX_T5 = re.compile(r"^lora_te2_(text_model_)?encoder_block_")

_CTX = {768: Family.SD1, 1024: Family.SD2, 2048: Family.SDXL, 64: Family.DEMO}
_TE_HIDDEN = {768: Family.SD1, 1024: Family.SD2, 1280: Family.SDXL, 64: Family.DEMO}


def detect_lora_family(modules: dict[str, dict[str, tuple[int, ...]]]) -> Family:
    """Family from module names and tensor shapes ({module: {param: shape}}), like A1111/kohya's base detection.

    Flux first: its names (BFL blocks, diffusers' transformer blocks, kohya's T5 ``lora_te3_``) are its own, and
    its CLIP-L keys are ``lora_te1_`` like SDXL's."""
    names = list(modules)
    proven = lora_family_by_names(names)  # the families whose module names are their own (arch/: Flux)
    if proven is not None:
        return proven
    if any(n.startswith(("lora_te1_", "lora_te2_")) for n in names):
        return Family.SDXL
    if any(
        re.match(r"lora_unet_(input_blocks|output_blocks|middle_block)_\d+_1_transformer_blocks_[1-9]", n)
        for n in names
    ):
        return Family.SDXL
    votes: list[Family] = []
    for name, shapes in modules.items():
        kind = module_kind(set(shapes))
        if kind is None:
            continue
        dim = module_in_dim(kind, shapes)
        if re.search(r"attn2_to_[kv]$", name) and dim in _CTX:
            votes.append(_CTX[dim])
        elif re.search(r"^lora_te_text_model_encoder_layers_\d+_self_attn_q_proj$", name) and dim in _TE_HIDDEN:
            votes.append(_TE_HIDDEN[dim])
    if any(re.match(r"lora_te_text_model_encoder_layers_(1[2-9]|2\d)_", n) for n in names):
        votes.append(Family.SD2)
    if not votes:
        return Family.UNKNOWN
    return max(set(votes), key=votes.count)


def describe_format(specs: dict[str, ModuleSpec]) -> str:
    kinds: list[str] = []
    for spec in specs.values():
        kind = "locon" if spec.kind == "lora" and spec.is_conv else spec.kind
        if kind not in kinds:
            kinds.append(kind)
    if "locon" in kinds and "lora" in kinds:
        kinds.remove("lora")
    if any("dora_scale" in s.tensors for s in specs.values()):
        kinds.append("dora")
    return "+".join(kinds) if kinds else "unknown"


BUNDLE_PREFIX = "bundle_emb."


def bundled_embeddings(path: Path, tensors: dict[str, torch.Tensor]) -> tuple[dict[str, Embedding], list[str]]:
    """The textual-inversion embeddings bundled in a LoRA (A1111 1.7+ ``networks.py``): ``bundle_emb.NAME.KEY``
    with KEY ``string_to_param.*``, ``clip_l``/``clip_g`` or ``emb_params``; → ({name: Embedding}, keys that
    name no embedding). A bundled embedding that is not one raises FormatError, as any bad module does."""
    grouped: dict[str, dict[str, object]] = {}
    odd: list[str] = []
    for key, tensor in tensors.items():
        if not key.startswith(BUNDLE_PREFIX):
            continue
        name, dot, part = key[len(BUNDLE_PREFIX) :].partition(".")
        if not name or not dot or not part:
            odd.append(key)
            continue
        entry = grouped.setdefault(name, {})
        head, _, sub = part.partition(".")
        if head == "string_to_param":
            entry["string_to_param"] = {sub or "*": tensor}
        else:
            entry[part] = tensor
    found = {name: embedding_from_data(data, name, f"{path}/{name}") for name, data in grouped.items()}
    return found, odd


def parse_state_dict(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> LoraFile:
    """Build a LoraFile from tensors; raise FormatError for NaN/Inf, inconsistent shapes or refused formats."""
    embeddings, odd_keys = bundled_embeddings(path, tensors)
    if embeddings or odd_keys:
        tensors = {k: v for k, v in tensors.items() if not k.startswith(BUNDLE_PREFIX)}
    groups, unparsed, layout = group_keys(list(tensors))
    unparsed += odd_keys
    for name, params in groups.items():  # validated before anything reads a shape (family detection does)
        kind = module_kind(set(params))
        if kind is not None and kind not in ("glora", "oft"):
            check_tensors(path, name, kind, {p: tensors[k] for p, k in params.items()})
    shapes = {m: {p: tuple(tensors[k].shape) for p, k in params.items()} for m, params in groups.items()}
    family = detect_lora_family(shapes)
    specs: dict[str, ModuleSpec] = {}
    for name, params in groups.items():
        kind = module_kind(set(params))
        if kind is None:
            unparsed.extend(params.values())
            continue
        if kind == "norm" and "bias" in params:  # a norm delta has b_norm for its bias; a `bias` there means nothing
            unparsed.append(params.pop("bias"))
        if kind in ("glora", "oft"):
            label = {"glora": "GLoRA", "oft": "OFT/BOFT"}[kind]
            raise FormatError(path, f"is a {label} LoRA, which loradeck does not support (module {name})")
        if family in (Family.SDXL, Family.FLUX) and name.startswith("lora_te_"):
            name = "lora_te1_" + name[len("lora_te_") :]  # diffusers `text_encoder.` of an SDXL/Flux file
        if family is Family.FLUX:
            name = _FLUX_T5.sub("lora_te3_encoder_block_", name)  # diffusers/OneTrainer T5 → kohya's
        spec = ModuleSpec(
            name=name, kind=kind, tensors={p: tensors[k] for p, k in params.items()}, keys=list(params.values())
        )
        specs[name] = spec
    if not specs and not embeddings:
        raise FormatError(path, "contains no LoRA module this program recognises")
    return LoraFile(path, metadata, family, describe_format(specs), layout, specs, sorted(unparsed), embeddings)


def load_lora(path: str | Path, device: str | torch.device = "cpu") -> LoraFile:
    """Load and parse a LoRA file (.safetensors, or .pt/.ckpt through the safe unpickler)."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, "file does not exist")
    if path.suffix.lower() in (".pt", ".ckpt", ".bin", ".pth"):
        from loradeck.formats.pickle_safe import load_pickle_state_dict

        tensors, metadata = load_pickle_state_dict(path, device), {}
    else:
        from loradeck.formats.safetensors_io import load_tensors, read_header

        header = read_header(path)
        check_header(path, header)  # shapes and scalars, before the tensors are read
        metadata, tensors = header.metadata, load_tensors(path, device=device)
    return parse_state_dict(path, tensors, metadata)
