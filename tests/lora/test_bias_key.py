"""A1111's ``bias`` LoRA key: an extra weight delta added to ΔW before the scale (network.py ``finalize_updown``):
W′ = W + m · s · (U·D + bias). Merged, scheduled (sidecar) and read by the tools, against that formula."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import build_small_sd1, kohya_lora, snapshot
from loradeck.errors import FormatError
from loradeck.lora.files.read import read_deltas
from loradeck.lora.formats import load_lora, parse_state_dict
from loradeck.lora.math import weight_delta
from loradeck.lora.patcher import LoraPatcher, StackEntry
from loradeck.lora.sidecar import LoraSidecar, ScheduledLora


def _with_bias(components, keymap, every: int = 3, seed: int = 5) -> dict[str, torch.Tensor]:
    """A kohya LoRA (with LoCon convs) where every ``every``-th module also has a random weight-shaped ``bias``."""
    sd = kohya_lora(components, keymap, rank=3, alpha=2.0, conv=True, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    modules = sorted({k.split(".", 1)[0] for k in sd})
    for name in modules[::every]:
        ref = keymap.resolve(name)
        w = components[ref.component].get_submodule(ref.path).weight
        sd[f"{name}.bias"] = torch.randn(w.shape, generator=g) * 0.05
    return sd


def _formula(base, lora, keymap, te, unet):
    want = dict(base)
    for spec in lora.modules.values():
        ref = keymap.resolve(spec.name)
        key = f"{ref.component}.{ref.path}.weight"
        t = spec.tensors
        up, down = t["lora_up.weight"].flatten(1), t["lora_down.weight"].flatten(1)
        delta = (up @ down).reshape(want[key].shape)
        if "bias" in t:
            delta = delta + t["bias"].reshape(delta.shape)
        m = te if ref.component == "te1" else unet
        want[key] = want[key] + m * (spec.alpha / spec.rank) * delta
    return want


def test_merged_weights_equal_the_formula_and_restore(tmp_path):
    components, keymap = build_small_sd1()
    base = snapshot(components)
    sd = _with_bias(components, keymap)
    path = tmp_path / "biased.safetensors"
    save_file(sd, str(path))
    lora = load_lora(path)
    with_bias = [s for s in lora.modules.values() if "bias" in s.tensors]
    assert len(with_bias) > 20 and not lora.unparsed_keys  # the key is read, not left over as "unmatched"
    patcher = LoraPatcher(components, keymap)
    report = patcher.apply([StackEntry(lora, te=0.6, unet=-0.8)])
    assert not report.warnings and report.files[0].modules_matched == len(lora.modules)
    now = snapshot(components)
    want = _formula(base, lora, keymap, te=0.6, unet=-0.8)
    for k in now:
        torch.testing.assert_close(now[k], want[k], rtol=1e-5, atol=1e-6)
    # the test can tell: without the bias the formula gives other weights for those modules
    plain = parse_state_dict(path, {k: v for k, v in sd.items() if not k.endswith(".bias")}, {})
    without = _formula(base, plain, keymap, te=0.6, unet=-0.8)
    ref = keymap.resolve(with_bias[0].name)
    key = f"{ref.component}.{ref.path}.weight"
    assert (without[key] - now[key]).abs().max() > 1e-3
    patcher.restore()
    after = snapshot(components)
    assert all(torch.equal(after[k], base[k]) for k in base)


def test_sidecar_applies_the_bias_like_the_merge():
    components, keymap = build_small_sd1()
    unet_only = {k: v for k, v in keymap.modules.items() if v.component == "unet"}
    km = type(keymap)(keymap.family, unet_only, dict(keymap.conv_modules), {}, keymap.aliases)
    lora = parse_state_dict(Path("b.safetensors"), _with_bias(components, km, every=2), {})
    unet = components["unet"]
    g = torch.Generator().manual_seed(0)
    x, t, ctx = torch.randn(1, 4, 16, 16, generator=g), torch.tensor([500]), torch.randn(1, 77, 32, generator=g)
    with torch.no_grad():
        sidecar = LoraSidecar(unet, keymap, [ScheduledLora(lora, lambda i, n: 0.7)])
        sidecar.set_step(0, 4)
        hooked = unet(x, t, ctx).sample
        sidecar.remove()
        patcher = LoraPatcher(components, keymap)
        patcher.apply([StackEntry(lora, te=0.7, unet=0.7)])
        merged = unet(x, t, ctx).sample
        patcher.restore()
    torch.testing.assert_close(hooked, merged, rtol=0, atol=1e-4)


def test_tools_read_the_bias_into_a_dense_delta():
    components, keymap = build_small_sd1()
    lora = parse_state_dict(Path("b.safetensors"), _with_bias(components, keymap), {})
    deltas = read_deltas(lora)
    for spec in lora.modules.values():
        got = deltas.modules[keymap.canonical(spec.name)]
        w = components[keymap.resolve(spec.name).component].get_submodule(keymap.resolve(spec.name).path).weight
        want = weight_delta(spec, w.detach().float()).reshape(w.shape[0], -1)
        torch.testing.assert_close(got.matrix(), want, rtol=1e-5, atol=1e-6)
        assert (got.dense is not None) == ("bias" in spec.tensors)


def test_a_bias_of_the_wrong_size_is_one_sentence(tmp_path):
    components, keymap = build_small_sd1()
    sd = kohya_lora(components, keymap, rank=2, seed=1)
    name = sorted({k.split(".", 1)[0] for k in sd})[0]
    sd[f"{name}.bias"] = torch.zeros(7)
    path = tmp_path / "odd.safetensors"
    save_file(sd, str(path))
    with pytest.raises(FormatError) as err:
        load_lora(path)
    text = str(err.value)
    assert "odd.safetensors" in text and f"module {name}: bias [7] has 7 values" in text and "\n" not in text
