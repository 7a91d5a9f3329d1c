"""Flux.1 LoRA names: kohya's BFL-style names (canonical) mapped onto diffusers' ``FluxTransformer2DModel``.

Black Forest Labs' original model (and kohya sd-scripts, ComfyUI, Forge after it) fuses some projections that
diffusers keeps apart, so one canonical LoRA module can change several of our modules, each taking a row slice of
the LoRA's ΔW (docs/reference/lora-formats.md, Flux section):

* double block ``img_attn.qkv`` [3D, D] → ``attn.to_q`` / ``to_k`` / ``to_v`` (rows 0:D, D:2D, 2D:3D);
  ``txt_attn.qkv`` → ``attn.add_q_proj`` / ``add_k_proj`` / ``add_v_proj``;
* single block ``linear1`` [3D + M, D] → ``attn.to_q`` / ``to_k`` / ``to_v`` / ``proj_mlp`` (M = the MLP width);
* ``final_layer.adaLN_modulation.1`` [2D, D] is (shift, scale) in BFL's order and (scale, shift) in diffusers'
  ``norm_out.linear``: its rows are swapped, not split.

D and M come from the model (config numbers, or the loaded modules' shapes), never from Flux.1-dev's sizes.
The diffusers spellings (``lora_transformer_transformer_blocks_0_attn_to_out_0``, OneTrainer's and what the dotted
``transformer.…`` keys normalise to) are aliases; a diffusers name of one piece of a fused weight (``…_attn_to_q``)
is a module of its own, recorded in ``KeyMap.part_of`` with the fused name and rows it stands for.
"""

from __future__ import annotations

from loradeck.families import Family
from loradeck.lora.keymap import KeyMap, ModuleRef, add_text_encoder

MLP_RATIO = 4.0  # diffusers' FluxSingleTransformerBlock default; keymap_from_flux_models reads the real width

# (BFL leaf, diffusers path) of the modules one-to-one between the layouts, per double / single block
_DOUBLE_ONE = (
    ("img_attn_proj", "attn.to_out.0"),
    ("img_mlp_0", "ff.net.0.proj"),
    ("img_mlp_2", "ff.net.2"),
    ("img_mod_lin", "norm1.linear"),
    ("txt_attn_proj", "attn.to_add_out"),
    ("txt_mlp_0", "ff_context.net.0.proj"),
    ("txt_mlp_2", "ff_context.net.2"),
    ("txt_mod_lin", "norm1_context.linear"),
)
_DOUBLE_NORMS = (
    ("img_attn_norm_query_norm", "attn.norm_q"),
    ("img_attn_norm_key_norm", "attn.norm_k"),
    ("txt_attn_norm_query_norm", "attn.norm_added_q"),
    ("txt_attn_norm_key_norm", "attn.norm_added_k"),
)
_SINGLE_ONE = (("linear2", "proj_out"), ("modulation_lin", "norm.linear"))
_SINGLE_NORMS = (("norm_query_norm", "attn.norm_q"), ("norm_key_norm", "attn.norm_k"))
# kohya's optional "in_dims"/train-everything modules outside the blocks
_GLOBAL = (
    ("img_in", "x_embedder"),
    ("txt_in", "context_embedder"),
    ("time_in_in_layer", "time_text_embed.timestep_embedder.linear_1"),
    ("time_in_out_layer", "time_text_embed.timestep_embedder.linear_2"),
    ("vector_in_in_layer", "time_text_embed.text_embedder.linear_1"),
    ("vector_in_out_layer", "time_text_embed.text_embedder.linear_2"),
    ("final_layer_linear", "proj_out"),
)
_GUIDANCE = (
    ("guidance_in_in_layer", "time_text_embed.guidance_embedder.linear_1"),
    ("guidance_in_out_layer", "time_text_embed.guidance_embedder.linear_2"),
)
T5_LEAVES = (
    "layer.0.SelfAttention.q",
    "layer.0.SelfAttention.k",
    "layer.0.SelfAttention.v",
    "layer.0.SelfAttention.o",
    "layer.1.DenseReluDense.wi_0",
    "layer.1.DenseReluDense.wi_1",
    "layer.1.DenseReluDense.wo",
)


def _u(path: str) -> str:
    return path.replace(".", "_")


def _alias_diffusers(km: KeyMap, canonical: str, path: str) -> None:
    """The diffusers spellings of ``path``: ``lora_transformer_…`` (OneTrainer, dotted ``transformer.`` keys) and
    ``lora_unet_…`` (LyCORIS' ``lycoris_`` prefix, which the reader turns into ``lora_unet_``)."""
    for prefix in ("lora_transformer_", "lora_unet_"):
        km.aliases[prefix + _u(path)] = canonical


def _one(km: KeyMap, target: dict[str, ModuleRef], bfl: str, path: str) -> None:
    name = "lora_unet_" + bfl
    target[name] = ModuleRef("transformer", path)
    _alias_diffusers(km, name, path)


def _fused(km: KeyMap, bfl: str, pieces: list[tuple[str, int]], dim: int, into_modules: bool = True) -> None:
    """A fused BFL weight held split: ``pieces`` = (diffusers path, rows) in the fused weight's row order."""
    name = "lora_unet_" + bfl
    total = sum(n for _, n in pieces)
    refs: list[ModuleRef] = []
    start = 0
    for path, n in pieces:
        ref = ModuleRef("transformer", path, rows=((start, start + n),), total=total, unit=dim)
        refs.append(ref)
        part = "lora_transformer_" + _u(path)
        km.extra_modules[part] = ModuleRef("transformer", path)
        km.aliases["lora_unet_" + _u(path)] = part
        km.part_of[part] = (name, (start, start + n))
        start += n
    km.fused[name] = tuple(refs)
    (km.modules if into_modules else km.extra_modules)[name] = refs[0]


def add_flux_transformer(km: KeyMap, config: dict, mlp_hidden: int | None = None) -> None:
    """Register every LoRA-targetable module of a ``FluxTransformer2DModel`` config (``mlp_hidden``: the single
    blocks' MLP width, read from the loaded model when there is one)."""
    dim = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    mlp = mlp_hidden if mlp_hidden is not None else int(dim * MLP_RATIO)
    for i in range(int(config["num_layers"])):
        p, d = f"double_blocks_{i}_", f"transformer_blocks.{i}."
        _fused(km, p + "img_attn_qkv", [(d + f"attn.to_{x}", dim) for x in "qkv"], dim)
        _fused(km, p + "txt_attn_qkv", [(d + f"attn.add_{x}_proj", dim) for x in "qkv"], dim)
        for bfl, path in _DOUBLE_ONE:
            _one(km, km.modules, p + bfl, d + path)
        for bfl, path in _DOUBLE_NORMS:
            _one(km, km.extra_modules, p + bfl, d + path)
    for i in range(int(config["num_single_layers"])):
        p, d = f"single_blocks_{i}_", f"single_transformer_blocks.{i}."
        _fused(km, p + "linear1", [(d + f"attn.to_{x}", dim) for x in "qkv"] + [(d + "proj_mlp", mlp)], dim)
        for bfl, path in _SINGLE_ONE:
            _one(km, km.modules, p + bfl, d + path)
        for bfl, path in _SINGLE_NORMS:
            _one(km, km.extra_modules, p + bfl, d + path)
    for bfl, path in _GLOBAL + (_GUIDANCE if config.get("guidance_embeds") else ()):
        _one(km, km.extra_modules, bfl, path)
    # BFL's (shift, scale) rows are diffusers' (scale, shift): the same module with its two halves swapped
    name = "lora_unet_final_layer_adaLN_modulation_1"
    km.extra_modules[name] = ModuleRef(
        "transformer", "norm_out.linear", rows=((dim, 2 * dim), (0, dim)), total=2 * dim, unit=dim
    )
    km.fused[name] = (km.extra_modules[name],)
    km.extra_modules["lora_transformer_norm_out_linear"] = ModuleRef("transformer", "norm_out.linear")
    km.aliases["lora_unet_norm_out_linear"] = "lora_transformer_norm_out_linear"


def add_t5(km: KeyMap, prefix: str, component: str, num_layers: int) -> None:
    """kohya's T5-XXL names (``lora_te3_encoder_block_N_layer_0_SelfAttention_q``) on a ``T5EncoderModel``."""
    for i in range(num_layers):
        for leaf in T5_LEAVES:
            path = f"encoder.block.{i}.{leaf}"
            km.modules[f"{prefix}_{_u(path)}"] = ModuleRef(component, path)


def build_flux_keymap(
    transformer_config: dict,
    clip_layers: int | None = None,
    t5_layers: int | None = None,
    clip_has_text_model: bool = False,
    mlp_hidden: int | None = None,
) -> KeyMap:
    """KeyMap of a Flux model: transformer (component "transformer"), CLIP-L ("te1", kohya ``lora_te1_``) and T5
    ("te2", kohya ``lora_te3_``) when their layer counts are given."""
    km = KeyMap(family=Family.FLUX)
    add_flux_transformer(km, transformer_config, mlp_hidden)
    if clip_layers:
        add_text_encoder(km, "lora_te1", "te1", clip_layers, clip_has_text_model)
    if t5_layers:
        add_t5(km, "lora_te3", "te2", t5_layers)
    return km


def keymap_from_flux_models(transformer, text_encoders: dict) -> KeyMap:
    """KeyMap from a loaded ``FluxTransformer2DModel`` and text encoders ({"te1": CLIP, "te2": T5}); reads config
    numbers and the single blocks' MLP width from the weights, never the module tree's names."""
    singles = getattr(transformer, "single_transformer_blocks", None)
    mlp = int(singles[0].proj_mlp.out_features) if singles is not None and len(singles) else None
    te1, te2 = text_encoders.get("te1"), text_encoders.get("te2")
    return build_flux_keymap(
        dict(transformer.config),
        clip_layers=te1.config.num_hidden_layers if te1 is not None else None,
        t5_layers=te2.config.num_layers if te2 is not None else None,
        clip_has_text_model=te1 is not None and hasattr(te1, "text_model"),
        mlp_hidden=mlp,
    )
