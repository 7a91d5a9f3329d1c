"""Flux LoRAs in every layout merge into a reduced random Flux as W + s·up@down on BFL's fused weights, and as
diffusers' load_lora_weights + fuse_lora does where diffusers reads the layout.

The reference mapping between BFL's fused weights and diffusers' split modules is written out here, independent
of loradeck's (it is diffusers' single-file conversion: qkv → to_q/to_k/to_v, linear1 → to_q/to_k/to_v/proj_mlp,
final_layer.adaLN_modulation.1 → norm_out.linear with shift and scale swapped).
"""

from __future__ import annotations

import pytest
import torch
from diffusers import FluxPipeline
from tests.helpers.flux import BLOCKS_ONLY, _fused_weight, _swap, bfl_table, build_tiny_flux, kohya_flux_lora

from conftest import snapshot
from loradeck.families import Family
from loradeck.lora.formats import parse_state_dict
from loradeck.lora.patcher import LoraPatcher, StackEntry


def _expected(comps, kohya_sd, scale=1.0) -> dict[str, torch.Tensor]:
    """{component.path.weight: W + m·s·up@down} by the reference table: the formula on BFL's fused weights."""
    tr = comps["transformer"]
    table = bfl_table(tr)
    by_kohya = {"lora_unet_" + bfl.replace(".", "_"): (bfl, t) for bfl, t in table.items()}
    out: dict[str, torch.Tensor] = {}
    for key in kohya_sd:
        if not key.endswith(".lora_down.weight"):
            continue
        name = key.split(".", 1)[0]
        down, up = kohya_sd[f"{name}.lora_down.weight"], kohya_sd[f"{name}.lora_up.weight"]
        alpha = kohya_sd.get(f"{name}.alpha")
        s = (float(alpha) / down.shape[0] if alpha is not None else 1.0) * scale
        delta = s * (up.float() @ down.float())
        if name in by_kohya:
            bfl, target = by_kohya[name]
            fused = _fused_weight(tr, target)
            if bfl == "final_layer.adaLN_modulation.1":  # diffusers holds (scale, shift); BFL (shift, scale)
                fused = _swap(fused)
            merged = fused + delta
            if bfl == "final_layer.adaLN_modulation.1":
                merged = _swap(merged)
            if isinstance(target, str):
                out[f"transformer.{target}.weight"] = merged
            else:
                start = 0
                for path, n in target:
                    out[f"transformer.{path}.weight"] = merged[start : start + n]
                    start += n
        else:
            comp, prefix = ("te1", "lora_te1_text_model_") if name.startswith("lora_te1_") else ("te2", "lora_te3_")
            path = _te_path(comps[comp], name[len(prefix) :])
            out[f"{comp}.{path}.weight"] = comps[comp].get_submodule(path).weight.detach().float() + delta
    return out


def _te_path(model, underscored: str) -> str:
    for path, _ in model.named_modules():  # test-side lookup only: the reference, not loradeck's way
        if path.replace(".", "_") == underscored:
            return path
    raise KeyError(underscored)


def _merge_ours(comps, keymap, sd, tmp_path, scale=1.0):
    lora = parse_state_dict(tmp_path / "flux.safetensors", sd, {})
    assert lora.family is Family.FLUX
    patcher = LoraPatcher(comps, keymap)
    report = patcher.apply([StackEntry(lora, te=scale, unet=scale)])
    assert not report.warnings, report.warnings
    assert not report.files[0].unmatched_modules and not lora.unparsed_keys, (
        report.files[0].unmatched_modules,
        lora.unparsed_keys,
    )
    return lora, patcher


def _close(ours: torch.Tensor, ref: torch.Tensor, key: str) -> None:
    tol = 1e-5 * max(float(ref.abs().max()), 1e-6)
    assert float((ours.float() - ref.float()).abs().max()) <= tol, key


def _check_formula(comps, expected) -> None:
    snap = snapshot(comps)
    for key, ref in expected.items():
        _close(snap[key], ref, key)


# ---------------------------------------------------------------- layouts built from one kohya LoRA
def comfy_layout(kohya_sd, ab=False):
    """ComfyUI/BFL: ``diffusion_model.<BFL path>.lora_down/up`` (or PEFT's ``lora_A/B``) and
    ``text_encoders.clip_l.transformer.<path>``."""
    tr_names = {k.split(".", 1)[0] for k in kohya_sd if k.startswith("lora_unet_")}
    out = {}
    for key, v in kohya_sd.items():
        name, param = key.split(".", 1)
        if ab:
            param = param.replace("lora_down", "lora_A").replace("lora_up", "lora_B")
        if name in tr_names:
            out[f"diffusion_model.{_bfl_dotted(name)}.{param}"] = v
        else:
            rest = name[len("lora_te1_text_model_") :]
            path = "text_model." + rest.replace("encoder_layers_", "encoder.layers.").replace(
                "_self_attn_", ".self_attn."
            )
            out[f"text_encoders.clip_l.transformer.{path}.{param}"] = v
    return out


def _bfl_dotted(kohya_name: str) -> str:
    return _BFL_BY_KOHYA[kohya_name]


_BFL_BY_KOHYA: dict[str, str] = {}


def _fill_bfl(comps) -> None:
    for bfl in bfl_table(comps["transformer"]):
        _BFL_BY_KOHYA["lora_unet_" + bfl.replace(".", "_")] = bfl


def split_layout(comps, kohya_sd, prefix: str, spelling: str):
    """The diffusers split: each fused module becomes its pieces with the shared down and the up's row block; the
    scale α/r is folded into up (PEFT files carry no α). ``spelling``: "dotted" (diffusers/PEFT ``lora_A/B``) or
    "kohya" (OneTrainer's ``lora_transformer_…`` with ``lora_down/up``)."""
    tr = comps["transformer"]
    table = bfl_table(tr)
    out = {}
    for bfl, target in table.items():
        name = "lora_unet_" + bfl.replace(".", "_")
        if f"{name}.lora_down.weight" not in kohya_sd:
            continue
        down, up = kohya_sd[f"{name}.lora_down.weight"], kohya_sd[f"{name}.lora_up.weight"]
        alpha = kohya_sd.get(f"{name}.alpha")
        up = up * (float(alpha) / down.shape[0] if alpha is not None else 1.0)
        if bfl == "final_layer.adaLN_modulation.1":
            pieces, up = [("norm_out.linear", up.shape[0])], _swap(up)
        elif isinstance(target, str):
            pieces = [(target, up.shape[0])]
        else:
            pieces = target
        start = 0
        for path, n in pieces:
            piece_up = up[start : start + n].clone()
            start += n
            if spelling == "dotted":
                out[f"{prefix}{path}.lora_A.weight"] = down.clone()
                out[f"{prefix}{path}.lora_B.weight"] = piece_up
            else:
                out[f"{prefix}{path.replace('.', '_')}.lora_down.weight"] = down.clone()
                out[f"{prefix}{path.replace('.', '_')}.lora_up.weight"] = piece_up
    return out


def xlabs_layout(kohya_sd):
    out = {}
    for key, v in kohya_sd.items():
        name, param = key.split(".", 1)
        if param == "alpha":
            continue
        i, stream, what = name.split("_")[4], name.split("_")[5], name.split("_")[7]
        lora = f"{what}_lora{1 if stream == 'img' else 2}"
        out[f"double_blocks.{i}.processor.{lora}.{'down' if 'down' in param else 'up'}.weight"] = v
    return out


# ---------------------------------------------------------------- diffusers' merge of the same file
def _diffusers_merged(sd, scale=1.0, seed=0) -> dict[str, torch.Tensor]:
    comps, _ = build_tiny_flux(seed)
    pipe = FluxPipeline(
        scheduler=None,
        vae=None,
        text_encoder=comps["te1"],
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=comps["transformer"],
    )
    pipe.load_lora_weights({k: v.clone() for k, v in sd.items()})
    pipe.fuse_lora(lora_scale=scale)
    pipe.unload_lora_weights()
    return snapshot(comps)


def _check_against(comps, ref: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> int:
    """Compare the transformer with diffusers' merge; the number of weights diffusers changed. (Its Flux kohya
    reader turns CLIP keys into ``to_q_lora`` names that 0.42 does not apply to a transformers-5 CLIPTextModel,
    so CLIP-L is checked by the formula.)"""
    ours = snapshot(comps)
    changed = 0
    for key, r in ref.items():
        if not key.startswith("transformer."):
            continue
        if not torch.equal(base[key], r):
            changed += 1
        _close(ours[key], r, key)
    return changed


def _n_transformer(expected) -> int:
    return sum(k.startswith("transformer.") for k in expected)


@pytest.fixture
def flux():
    comps, keymap = build_tiny_flux()
    _fill_bfl(comps)
    return comps, keymap


def _diffusers_kohya_reads(bfl: str) -> bool:
    """What diffusers' kohya Flux reader merges on a reduced model: it leaves img_in/txt_in/time_in/vector_in/
    guidance_in/final_layer unmerged (0.42) and splits single blocks' linear1 at Flux.1-dev's hard-coded sizes
    (3072×3 + 12288), so those are checked by the formula only."""
    return bfl.startswith(BLOCKS_ONLY) and not bfl.endswith("linear1")


def test_kohya_layout_formula_and_diffusers(flux, tmp_path):
    comps, keymap = flux
    sd = kohya_flux_lora(comps, which=_diffusers_kohya_reads)
    base = snapshot(comps)
    expected = _expected(comps, sd, scale=0.8)
    lora, _ = _merge_ours(comps, keymap, sd, tmp_path, scale=0.8)
    assert lora.layout == "kohya" and "lora_unet_double_blocks_0_img_attn_qkv" in lora.modules
    _check_formula(comps, expected)
    changed = _check_against(comps, _diffusers_merged(sd, scale=0.8), base)
    assert changed == _n_transformer(expected)  # diffusers changed exactly the weights the formula names


def test_every_kohya_module_including_guidance_and_t5(flux, tmp_path):
    comps, keymap = flux
    sd = kohya_flux_lora(comps, t5=True)
    expected = _expected(comps, sd)
    lora, patcher = _merge_ours(comps, keymap, sd, tmp_path)
    assert any(n.startswith("lora_te3_") for n in lora.modules)
    _check_formula(comps, expected)
    base = build_tiny_flux()[0]
    patcher.restore()
    for key, v in snapshot(base).items():
        assert torch.equal(snapshot(comps)[key], v), key


@pytest.mark.parametrize("ab", [False, True])
def test_comfyui_layout(flux, tmp_path, ab):
    comps, keymap = flux
    kohya = kohya_flux_lora(comps, which=None if ab else _diffusers_kohya_reads)
    sd = comfy_layout(kohya, ab=ab)
    base = snapshot(comps)
    expected = _expected(comps, kohya)
    lora, _ = _merge_ours(comps, keymap, sd, tmp_path)
    assert lora.layout == "comfyui"
    _check_formula(comps, expected)
    if not ab:  # diffusers reads ComfyUI's kohya-style parameter names
        assert _check_against(comps, _diffusers_merged(sd), base) == _n_transformer(expected)


@pytest.mark.parametrize("prefix", ["transformer.", "base_model.model."])
def test_diffusers_peft_split_layout(flux, tmp_path, prefix):
    comps, keymap = flux
    kohya = kohya_flux_lora(comps, which=lambda b: b.startswith(BLOCKS_ONLY) or b.startswith("final_layer"), clip=False)
    sd = split_layout(comps, kohya, prefix, "dotted")
    base = snapshot(comps)
    expected = _expected(comps, kohya)
    lora, _ = _merge_ours(comps, keymap, sd, tmp_path)
    assert "lora_transformer_transformer_blocks_0_attn_to_q" in lora.modules
    assert (
        keymap.part_of["lora_transformer_transformer_blocks_0_attn_to_q"][0] == "lora_unet_double_blocks_0_img_attn_qkv"
    )
    _check_formula(comps, expected)
    if prefix == "transformer.":
        assert _check_against(comps, _diffusers_merged(sd), base) == _n_transformer(expected)


def test_onetrainer_layout(flux, tmp_path):
    comps, keymap = flux
    kohya = kohya_flux_lora(comps, which=lambda b: b.startswith(BLOCKS_ONLY), clip=False)
    sd = split_layout(comps, kohya, "lora_transformer_", "kohya")
    expected = _expected(comps, kohya)
    _merge_ours(comps, keymap, sd, tmp_path)
    _check_formula(comps, expected)


def test_xlabs_layout(flux, tmp_path):
    comps, keymap = flux
    kohya = kohya_flux_lora(
        comps, alpha=None, which=lambda b: b.startswith("double_blocks.") and "attn" in b, clip=False
    )
    sd = xlabs_layout(kohya)
    base = snapshot(comps)
    expected = _expected(comps, kohya)
    lora, _ = _merge_ours(comps, keymap, sd, tmp_path)
    assert lora.layout == "xlabs"
    _check_formula(comps, expected)
    assert _check_against(comps, _diffusers_merged(sd), base) == _n_transformer(expected)


# ---------------------------------------------------------------- other kinds on fused weights, switching
def _kinds_lora(comps, seed=3):
    """One module of each kind on fused weights (kohya names) and the reference ΔW_fused of each (s included)."""
    g = torch.Generator().manual_seed(seed)
    tr = comps["transformer"]
    table = bfl_table(tr)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.2  # noqa: E731
    sd, ref = {}, {}
    # LoKr, W2 rows dividing D (sliced in W1) and not dividing it (materialised)
    for bfl, w2_rows, w1_rank in (("double_blocks.0.img_attn.qkv", 8, None), ("double_blocks.1.txt_attn.qkv", 12, 2)):
        w = _fused_weight(tr, table[bfl])
        n = "lora_unet_" + bfl.replace(".", "_")
        p, cols = w.shape[0] // w2_rows, w.shape[1]
        w2 = r(w2_rows, cols // 4)
        sd[f"{n}.lokr_w2"] = w2
        if w1_rank:
            sd[f"{n}.lokr_w1_a"], sd[f"{n}.lokr_w1_b"] = r(p, w1_rank), r(w1_rank, 4)
            sd[f"{n}.alpha"] = torch.tensor(1.0)
            w1, s = sd[f"{n}.lokr_w1_a"] @ sd[f"{n}.lokr_w1_b"], 1.0 / w1_rank
        else:
            sd[f"{n}.lokr_w1"] = w1 = r(p, 4)
            s = 1.0
        ref[bfl] = s * torch.kron(w1, w2)
    # LoHa on linear1 (4 pieces)
    bfl = "single_blocks.0.linear1"
    w = _fused_weight(tr, table[bfl])
    n = "lora_unet_" + bfl.replace(".", "_")
    a1, b1, a2, b2 = r(w.shape[0], 2), r(2, w.shape[1]), r(w.shape[0], 2), r(2, w.shape[1])
    sd |= {f"{n}.hada_w1_a": a1, f"{n}.hada_w1_b": b1, f"{n}.hada_w2_a": a2, f"{n}.hada_w2_b": b2}
    sd[f"{n}.alpha"] = torch.tensor(4.0)
    ref[bfl] = 2.0 * (a1 @ b1) * (a2 @ b2)
    # full diff on the other linear1, DoRA (per-row magnitudes) on a qkv
    bfl = "single_blocks.1.linear1"
    w = _fused_weight(tr, table[bfl])
    sd["lora_unet_single_blocks_1_linear1.diff"] = ref[bfl] = r(*w.shape)
    bfl = "double_blocks.1.img_attn.qkv"
    w = _fused_weight(tr, table[bfl])
    n = "lora_unet_" + bfl.replace(".", "_")
    up, down = r(w.shape[0], 4), r(4, w.shape[1])
    mag = w.norm(dim=1, keepdim=True) * (1 + r(w.shape[0], 1).abs())
    sd |= {
        f"{n}.lora_up.weight": up,
        f"{n}.lora_down.weight": down,
        f"{n}.alpha": torch.tensor(4.0),
        f"{n}.dora_scale": mag,
    }
    merged = w + up @ down
    ref[bfl] = merged * (mag / merged.norm(dim=1, keepdim=True)) - w
    return sd, ref


def test_lokr_loha_full_dora_on_fused_weights(flux, tmp_path):
    comps, keymap = flux
    sd, ref = _kinds_lora(comps)
    tr = comps["transformer"]
    table = bfl_table(tr)
    expected = {}
    for bfl, delta in ref.items():
        merged = _fused_weight(tr, table[bfl]) + delta
        start = 0
        for path, n in table[bfl]:
            expected[f"transformer.{path}.weight"] = merged[start : start + n]
            start += n
    lora, _ = _merge_ours(comps, keymap, sd, tmp_path)
    assert {s.kind for s in lora.modules.values()} == {"lokr", "loha", "full", "lora"}
    _check_formula(comps, expected)


def test_dora_with_column_magnitudes_on_a_fused_weight_is_refused(flux, tmp_path):
    from loradeck.errors import FormatError

    comps, keymap = flux
    sd = kohya_flux_lora(comps, which=lambda b: b == "double_blocks.0.img_attn.qkv", clip=False)
    sd["lora_unet_double_blocks_0_img_attn_qkv.dora_scale"] = torch.ones(1, 32)
    lora = parse_state_dict(tmp_path / "dora.safetensors", sd, {})
    with pytest.raises(FormatError, match="per-column magnitudes"):
        LoraPatcher(comps, keymap).apply([StackEntry(lora)])


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_random_switches_restore_bit_exactly(flux, tmp_path, dtype):
    """kohya, PEFT-split and LoKr/LoHa/DoRA files in random stacks and weights, fp32 and bf16 weights: after 100
    switches the original bits come back (int8 corrections: copy_share 0; DoRA keeps a copy)."""
    comps, keymap = flux
    for m in comps.values():  # bf16: how Flux runs on GPUs (fp8 files are widened to it on load)
        m.to(dtype)
    original = snapshot(comps)
    kohya = kohya_flux_lora(comps, seed=5)
    split = split_layout(comps, kohya_flux_lora(comps, seed=6, clip=False), "transformer.", "dotted")
    kinds, _ = _kinds_lora(comps, seed=7)
    files = [parse_state_dict(tmp_path / f"{i}.safetensors", sd, {}) for i, sd in enumerate((kohya, split, kinds))]
    patcher = LoraPatcher(comps, keymap, copy_share=0.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        stack = [
            StackEntry(f, te=w, unet=w) for f in files for w in [round(float(torch.rand(1, generator=g)) * 2 - 0.5, 2)]
        ]
        stack = [e for e, keep in zip(stack, torch.rand(3, generator=g) > 0.4, strict=True) if keep]
        patcher.apply(stack)
    patcher.apply([])
    now = snapshot(comps)
    assert all(torch.equal(now[k], v) for k, v in original.items())
    patcher.restore()
    assert patcher.undo_bytes() == 0


def test_inspect_names_a_flux_file(flux, tmp_path):
    from safetensors.torch import save_file

    from loradeck.lora.inspect import inspect_lora

    comps, _ = flux
    path = tmp_path / "flux_style.safetensors"
    save_file(comfy_layout(kohya_flux_lora(comps)), str(path))
    info = inspect_lora(path)
    assert info["family"] == "flux" and info["layout"] == "comfyui"
    assert info["modules_total"] == 19 * 10 + 38 * 3 + 12 * 6 + 24 * 7  # Flux.1-dev's kohya set, CLIP-L, T5-XXL


def test_convert_to_peft_splits_fused_modules(flux, tmp_path):
    """``lora convert --to peft`` of a kohya Flux file: each fused module becomes its diffusers pieces; the
    converted file merges to the same weights (the formula) and loads in diffusers to the same weights."""
    from loradeck.lora.files.read import read_deltas
    from loradeck.lora.files.write import LowRankModule
    from loradeck.lora.ops.convert import peft_tensors

    comps, keymap = flux
    kohya = kohya_flux_lora(comps, which=lambda b: b.startswith(BLOCKS_ONLY) or b.startswith("final_layer"), clip=True)
    ds = read_deltas(parse_state_dict(tmp_path / "k.safetensors", kohya, {}))
    modules = [LowRankModule(d.name, d.shape, *d.lowrank()) for d in ds.modules.values()]
    peft = peft_tensors(modules, Family.FLUX, torch.float32)
    assert "transformer.single_transformer_blocks.0.proj_mlp.lora_B.weight" in peft
    assert "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight" in peft
    base = snapshot(comps)
    expected = _expected(comps, kohya)
    _merge_ours(comps, keymap, peft, tmp_path)
    _check_formula(comps, expected)
    transformer_only = {k: v for k, v in peft.items() if k.startswith("transformer.")}
    assert _check_against(comps, _diffusers_merged(transformer_only), base) == _n_transformer(expected)
