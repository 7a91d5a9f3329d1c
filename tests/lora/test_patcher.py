"""Stacks merge as W + Σ m·s·ΔW, switch incrementally, restore bit-exactly; bad input leaves the model untouched."""

from __future__ import annotations

import random
import struct

import pytest
import torch
from safetensors.torch import save_file

from conftest import build_small_sd1, kohya_lora, snapshot
from loradeck.errors import FormatError
from loradeck.families import Family
from loradeck.lora.formats import load_lora, parse_state_dict
from loradeck.lora.patcher import LoraPatcher, StackEntry


def _lora(tmp_path, comps, km, name, **kw):
    sd = kohya_lora(comps, km, **kw)
    path = tmp_path / f"{name}.safetensors"
    save_file(sd, str(path))
    return load_lora(path)


def _identical(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stack_equals_formula(sd1_small, tmp_path):
    comps, km = sd1_small
    base = snapshot(comps)
    a = _lora(tmp_path, comps, km, "a", alpha=2.0, per_module_alpha=True)
    b = _lora(tmp_path, comps, km, "b", rank=3, alpha=None, seed=7, conv=True)
    LoraPatcher(comps, km).apply([StackEntry(a, te=0.4, unet=0.9), StackEntry(b, te=1.0, unet=-0.5)])
    now = snapshot(comps)
    for lora, te, un in ((a, 0.4, 0.9), (b, 1.0, -0.5)):
        for spec in lora.modules.values():
            ref = km.resolve(spec.name)
            m = te if ref.component == "te1" else un
            key = f"{ref.component}.{ref.path}.weight"
            up, down = spec.tensors["lora_up.weight"].flatten(1), spec.tensors["lora_down.weight"].flatten(1)
            s = (spec.alpha / spec.rank) if spec.alpha is not None else 1.0
            base[key] = base[key] + (m * s * (up @ down)).reshape(base[key].shape)
    for k in now:
        torch.testing.assert_close(now[k], base[k], rtol=1e-5, atol=1e-6)


def _size(comps) -> int:
    params = [p for m in comps.values() for p in (m.parameters() if isinstance(m, torch.nn.Module) else [m])]
    return sum(p.numel() * p.element_size() for p in params)


@pytest.mark.parametrize("budget", ["corrections only", "half copies", "copies"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_100_random_switches_restore_bit_exact(tmp_path, dtype, budget, monkeypatch):
    import loradeck.lora.blocks as blocks

    monkeypatch.setattr(blocks, "BLOCK_ELEMENTS", 4096)  # many row blocks per weight, as on real models
    comps, km = build_small_sd1()
    for m in comps.values():
        m.to(dtype)
    base = snapshot(comps)
    loras = [_lora(tmp_path, comps, km, f"l{i}", seed=i, alpha=float(i + 1), conv=i % 2 == 0) for i in range(4)]
    share = {"corrections only": 0.0, "half copies": 0.5, "copies": None}[budget]
    patcher, rng = LoraPatcher(comps, km, copy_share=share), random.Random(0)
    for _ in range(100):
        picks = rng.sample(loras, rng.randint(0, 3))
        patcher.apply([StackEntry(lo, rng.choice([0.0, 0.3, 1.0, -0.7]), rng.uniform(-1.5, 1.5)) for lo in picks])
        if budget == "corrections only":
            assert not patcher.copied_modules()
            touched = sum(_size({"p": patcher._param(k)}) for k in patcher._slots)
            per_element = 1 / (4 if dtype == torch.float32 else 2)  # one int8 per weight, plus a few wide ones
            assert patcher.undo_bytes() <= touched * per_element * 1.2
        elif budget == "half copies":
            copied = sum(_size({"p": s.original}) for s in patcher._slots.values() if s.original is not None)
            assert copied <= 0.5 * sum(patcher._touched.values())
    patcher.apply([])
    assert _identical(snapshot(comps), base)
    patcher.restore()
    assert patcher.undo_bytes() == 0
    assert _identical(snapshot(comps), base)


def test_wide_corrections_restore_exactly(tmp_path):
    """Originals tiny next to Δ lose their bits in W′; they come back from the full-width corrections."""
    comps, km = build_small_sd1()
    with torch.no_grad():
        for p in comps["unet"].parameters():
            p[torch.rand_like(p) < 0.3] *= 1e-6
    base = snapshot(comps)
    lora = _lora(tmp_path, comps, km, "big", alpha=8.0)
    patcher = LoraPatcher(comps, km, copy_share=0.0)
    patcher.apply([StackEntry(lora, 1.0, 1.0)])
    assert any(s.wide_index is not None and s.wide_index.numel() for s in patcher._slots.values())
    patcher.apply([])
    assert _identical(snapshot(comps), base)


def test_switch_recomputes_only_changed_modules(sd1_small, tmp_path):
    comps, km = sd1_small
    a = _lora(tmp_path, comps, km, "a")
    te_only = parse_state_dict(
        tmp_path / "te.safetensors",
        {k: v for k, v in kohya_lora(comps, km, seed=3).items() if k.startswith("lora_te_")},
        {},
    )
    p = LoraPatcher(comps, km)
    assert p.apply([StackEntry(a)]).recomputed == 264
    assert p.apply([StackEntry(a), StackEntry(te_only)]).recomputed == 72  # only the text encoder changes
    assert p.apply([StackEntry(a, te=0.5), StackEntry(te_only)]).recomputed == 72
    assert p.apply([StackEntry(a, te=0.5), StackEntry(te_only)]).recomputed == 0


def test_other_family_warned_once_and_skipped(sd1_small, tmp_path):
    comps, km = sd1_small
    a = _lora(tmp_path, comps, km, "a")
    xl = parse_state_dict(
        tmp_path / "xl.safetensors",
        {
            "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(2, 1280),
            "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": torch.zeros(5120, 2),
        },
        {},
    )
    assert xl.family is Family.SDXL
    base = snapshot(comps)
    report = LoraPatcher(comps, km).apply([StackEntry(xl), StackEntry(a)])
    assert len(report.warnings) == 1 and "xl" in report.warnings[0] and "SDXL" in report.warnings[0]
    assert report.files[0].skipped and report.files[1].modules_matched == 264
    assert not _identical(snapshot(comps), base)


def test_wrong_shapes_raise_and_leave_model_untouched(sd1_small, tmp_path):
    comps, km = sd1_small
    good = _lora(tmp_path, comps, km, "good")
    p = LoraPatcher(comps, km)
    p.apply([StackEntry(good)])
    before = snapshot(comps)
    sd = kohya_lora(comps, km, seed=5)
    sd["lora_unet_mid_block_attentions_0_proj_out.lora_up.weight"] = torch.randn(7, 4, 1, 1)
    bad = parse_state_dict(tmp_path / "bad.safetensors", sd, {})
    with pytest.raises(FormatError, match="bad.safetensors.*does not fit"):
        p.apply([StackEntry(bad)])
    assert _identical(snapshot(comps), before)


@pytest.mark.parametrize("copy_share", [0.0, None])
def test_error_mid_apply_rolls_back(sd1_small, tmp_path, monkeypatch, copy_share):
    comps, km = sd1_small
    a, b = _lora(tmp_path, comps, km, "a"), _lora(tmp_path, comps, km, "b", seed=9)
    p = LoraPatcher(comps, km, copy_share=copy_share)
    p.apply([StackEntry(a)])
    before = snapshot(comps)
    import loradeck.lora.patcher as patcher_mod

    real, calls = patcher_mod.DeltaRows, {"n": 0}

    def flaky(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 150:
            raise MemoryError("simulated")
        return real(*args, **kw)

    monkeypatch.setattr(patcher_mod, "DeltaRows", flaky)
    with pytest.raises(MemoryError):
        p.apply([StackEntry(b)])
    monkeypatch.setattr(patcher_mod, "DeltaRows", real)
    assert _identical(snapshot(comps), before)


def test_bad_files_raise_format_error(tmp_path, sd1_small):
    comps, km = sd1_small
    path = tmp_path / "nan.safetensors"
    sd = kohya_lora(comps, km)
    next_key = next(iter(sd))
    sd[next_key][0] = float("nan")
    save_file(sd, str(path))
    with pytest.raises(FormatError, match="nan.safetensors.*NaN"):
        load_lora(path)
    good = tmp_path / "g.safetensors"
    save_file(kohya_lora(comps, km), str(good))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(FormatError, match="cut.safetensors.*truncated"):
        load_lora(cut)
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", 10 * 1024**3) + b"{}")
    with pytest.raises(FormatError, match="huge.safetensors"):
        load_lora(huge)
    with pytest.raises(FormatError, match="missing.safetensors"):
        load_lora(tmp_path / "missing.safetensors")


def test_dyn_truncates_ranks_and_keeps_the_full_rank_scale(sd1_small, tmp_path):
    """DyLoRA's <lora:name:te:unet:dyn>: up[:, :dyn] @ down[:dyn] · α/r_full (A1111's rebuild_conventional)."""
    comps, km = sd1_small
    base = snapshot(comps)
    lora = _lora(tmp_path, comps, km, "dy", rank=4, alpha=2.0)
    cut = lora.truncated(2)
    assert lora.truncated(2) is cut and lora.truncated(8) is not lora  # cached; a dyn above the rank changes nothing
    assert all(s is lora.modules[n] for n, s in lora.truncated(8).modules.items())
    LoraPatcher(comps, km).apply([StackEntry(cut, te=0.5, unet=1.0)])
    now = snapshot(comps)
    for spec in lora.modules.values():
        ref = km.resolve(spec.name)
        m = 0.5 if ref.component == "te1" else 1.0
        key = f"{ref.component}.{ref.path}.weight"
        up, down = spec.tensors["lora_up.weight"].flatten(1)[:, :2], spec.tensors["lora_down.weight"].flatten(1)[:2]
        expected = base[key] + (m * (2.0 / 4) * (up @ down)).reshape(base[key].shape)
        torch.testing.assert_close(now[key], expected, rtol=1e-5, atol=1e-6)
