"""Block weights applied: each module's ΔW × its block's weight (BASE on the text encoders), SD1 and SDXL.

Reference: ΔW computed here from the LoRA's factors (α/r · up @ down), block ids from an independent formula on
the module's path (diffusers path in the patcher test, original LDM key in the merge-into test).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file
from test_block_weights import _expected_block
from tests.helpers.checkpoints import model_configs, write_checkpoint
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from conftest import build_small_sd1, kohya_lora, snapshot
from loradeck.families import Family
from loradeck.lora import LoraPatcher, StackEntry, build_keymap, parse_state_dict
from loradeck.lora.bake import merge_into_checkpoint
from loradeck.lora.block_weights import BLOCK_IDS, BUILTIN_PRESETS, BlockWeights, resolve

RANK, ALPHA = 4, 2.0


def _small_sdxl(seed: int = 0):
    torch.manual_seed(seed)
    cfgs = model_configs("sdxl")
    ucfg = {k: v for k, v in cfgs["unet"].items() if not k.startswith("_")}
    unet = UNet2DConditionModel(**ucfg).eval()
    tes = {}
    for comp, cls, key in (
        ("te1", CLIPTextModel, "text_encoder"),
        ("te2", CLIPTextModelWithProjection, "text_encoder_2"),
    ):
        tes[comp] = cls(CLIPTextConfig(**{k: v for k, v in cfgs[key].items() if not k.startswith("_")})).eval()
    layers = {k: {"num_hidden_layers": m.config.num_hidden_layers} for k, m in tes.items()}
    keymap = build_keymap(Family.SDXL, ucfg, layers, {"te1": False, "te2": True})
    return {"unet": unet, **tes}, keymap


def _sample_lora(components, keymap, seed: int) -> dict[str, torch.Tensor]:
    """A kohya LoCon over a few modules of every block (an attention module and a ResNet conv where the block has
    them, text-encoder modules for BASE): every block is covered while the test stays small."""
    picked: dict[tuple[str | None, str], list[str]] = {}
    for kind, names in (("attn", keymap.modules), ("conv", keymap.conv_modules)):
        for name, ref in sorted(names.items()):
            picked.setdefault((_expected_block(ref), kind), []).append(name)
    keep = {n for names in picked.values() for n in names[:2]}
    sd = kohya_lora(components, keymap, rank=RANK, alpha=ALPHA, conv=True, seed=seed)
    return {k: v for k, v in sd.items() if k.rsplit(".", 2)[0] in keep or k.rsplit(".", 1)[0] in keep}


@pytest.fixture(scope="module", params=["sd1", "sdxl"])
def model(request):
    components, keymap = build_small_sd1() if request.param == "sd1" else _small_sdxl()
    return components, keymap, _sample_lora(components, keymap, seed=3)


def _delta(sd: dict, name: str, shape) -> torch.Tensor:
    up, down = sd[f"{name}.lora_up.weight"], sd[f"{name}.lora_down.weight"]
    return (ALPHA / RANK) * (up.flatten(1) @ down.flatten(1)).reshape(shape)


def _random_vector(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return ",".join(f"{rng.uniform(-1.5, 1.5):.3f}" for _ in range(n))


CASES = sorted(BUILTIN_PRESETS) + ["random17", "random12", "random26"]


def _weights(case: str) -> BlockWeights:
    if case.startswith("random"):
        n = int(case[6:])
        return resolve(_random_vector(n, n), {}, "test")
    return resolve(case, BUILTIN_PRESETS, "test")


@pytest.mark.parametrize("case", CASES)
def test_patcher_follows_the_per_block_formula(model, case):
    components, keymap, sd = model
    lora = parse_state_dict(Path("l.safetensors"), sd, {})
    before = snapshot(components)
    bw = _weights(case)
    te, unet = 0.7, 1.3
    patcher = LoraPatcher(components, keymap)
    report = patcher.apply([StackEntry(lora, te=te, unet=unet, block_weights=bw)])
    try:
        assert report.files[0].modules_matched == len(lora.modules)
        weights = dict(zip(BLOCK_IDS, bw.values, strict=True))
        checked = 0
        for name, ref in {**keymap.modules, **keymap.conv_modules}.items():
            if f"{name}.alpha" not in sd:
                continue
            w = components[ref.component].get_submodule(ref.path).weight
            block = _expected_block(ref)
            m = (te if ref.component != "unet" else unet) * weights[block]
            want = before[f"{ref.component}.{ref.path}.weight"] + m * _delta(sd, name, w.shape)
            torch.testing.assert_close(w.detach(), want, rtol=0, atol=1e-5, msg=f"{case} {name} ({block})")
            checked += 1
        assert checked == len(lora.modules)
    finally:
        patcher.restore()
    after = snapshot(components)
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_lbw_all_ones_26_equals_no_lbw(model):
    """A 26-entry vector of ones is the plain LoRA, bit for bit (the multiplier is exactly 1 everywhere)."""
    components, keymap, sd = model
    lora = parse_state_dict(Path("l.safetensors"), sd, {})
    patcher = LoraPatcher(components, keymap)
    patcher.apply([StackEntry(lora, te=0.8, unet=0.8)])
    plain = snapshot(components)
    patcher.apply([StackEntry(lora, te=0.8, unet=0.8, block_weights=resolve(",".join(["1"] * 26), {}, "t"))])
    ones = snapshot(components)
    patcher.restore()
    assert all(torch.equal(plain[k], ones[k]) for k in plain)


def test_layout_gaps_are_reported(model):
    """The 17-entry ALL has no OUT00–OUT02 (SDXL attention, SD1 ResNets): weight 0 as in the extension, and said."""
    components, keymap, sd = model
    patcher = LoraPatcher(components, keymap)
    report = patcher.apply(
        [
            StackEntry(
                parse_state_dict(Path("l.safetensors"), sd, {}), block_weights=resolve("ALL", BUILTIN_PRESETS, "t")
            )
        ]
    )
    patcher.restore()
    assert any("OUT00, OUT01, OUT02" in w and "weight 0" in w for w in report.warnings)


# ------------------------------------------------------------------------------------------------ merge-into
def _ldm_block(key: str) -> str | None:
    """The extension's block of an original-layout checkpoint key."""
    if key.startswith(("cond_stage_model.", "conditioner.embedders.")):
        return "BASE"
    if m := re.match(r"model\.diffusion_model\.input_blocks\.(\d+)\.", key):
        return f"IN{int(m[1]):02d}"
    if key.startswith("model.diffusion_model.middle_block."):
        return "M00"
    if m := re.match(r"model\.diffusion_model\.output_blocks\.(\d+)\.", key):
        return f"OUT{int(m[1]):02d}"
    return None


@pytest.mark.parametrize(("name", "case"), [("sd15", "random17"), ("sd15", "MIDD"), ("sdxl", "random12")])
def test_merge_into_follows_the_per_block_formula(tmp_path, name, case):
    """baked(lbw) = base + w_block · (baked(plain) − base) on every key; the plain bake is checked in test_bake."""
    base_path = tmp_path / "base.safetensors"
    base = write_checkpoint(base_path, name)
    components, keymap = build_small_sd1() if name == "sd15" else _small_sdxl()
    if name == "sd15":  # the checkpoint's own shapes (its text encoder is 768 wide, 2 layers)
        cfgs = model_configs("sd15")
        te = CLIPTextModel(CLIPTextConfig(**{k: v for k, v in cfgs["text_encoder"].items() if k[0] != "_"}))
        ucfg = {k: v for k, v in cfgs["unet"].items() if not k.startswith("_")}
        components = {"unet": UNet2DConditionModel(**ucfg), "te1": te}
        keymap = build_keymap(Family.SD1, ucfg, {"te1": {"num_hidden_layers": 2}}, {"te1": False})
    lora_path = tmp_path / "l.safetensors"
    save_file(_sample_lora(components, keymap, seed=5), str(lora_path))
    bw = _weights(case)
    w = 0.9
    merge_into_checkpoint(base_path, [(lora_path, w)], tmp_path / "plain.safetensors")
    merge_into_checkpoint(base_path, [(lora_path, w, bw)], tmp_path / "lbw.safetensors")
    plain, lbw = load_file(str(tmp_path / "plain.safetensors")), load_file(str(tmp_path / "lbw.safetensors"))
    weights = dict(zip(BLOCK_IDS, bw.values, strict=True))
    changed = 0
    for key in base:
        if torch.equal(plain[key], base[key]):
            assert torch.equal(lbw[key], base[key]), key
            continue
        changed += 1
        block = _ldm_block(key)
        assert block is not None, key  # every module this LoRA touches lies in a block
        want = base[key] + weights[block] * (plain[key] - base[key])
        torch.testing.assert_close(lbw[key], want, rtol=0, atol=1e-5, msg=f"{key} ({block})")
    assert changed > 20


def test_merge_into_cli_takes_lbw(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from loradeck.cli import app

    home = tmp_path / "home"
    home.mkdir()
    (home / "lbwpresets.txt").write_text("HALF:" + ",".join(["0.5"] * 26) + "\n")
    monkeypatch.setenv("LORADECK_HOME", str(home))
    base_path = tmp_path / "base.safetensors"
    base = write_checkpoint(base_path, "sd15")
    lora_path = tmp_path / "l.safetensors"
    q = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    g = torch.Generator().manual_seed(0)
    up, down = torch.randn(32, RANK, generator=g), torch.randn(RANK, 32, generator=g)
    save_file(
        {f"{q}.lora_up.weight": up, f"{q}.lora_down.weight": down, f"{q}.alpha": torch.tensor(ALPHA)}, str(lora_path)
    )
    runner = CliRunner()
    for spec, factor in ((f"{lora_path}:0.8:lbw=HALF", 0.4), (f"{lora_path}:0.8:lbw=OUTS", 0.0)):
        out = tmp_path / "out.safetensors"
        result = runner.invoke(
            app,
            ["lora", "merge-into", "--checkpoint", str(base_path), "--lora", spec, "--out", str(out)],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        key = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
        want = base[key] + factor * (ALPHA / RANK) * (up @ down)
        torch.testing.assert_close(load_file(str(out))[key], want, rtol=0, atol=1e-5)
    from loradeck.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="random/inherited entry 'R'"):
        vector = ",".join(["R"] + ["1"] * 16)
        args = ["lora", "merge-into", "--checkpoint", str(base_path), "--lora", f"{lora_path}:1:lbw={vector}"]
        runner.invoke(app, [*args, "--out", str(tmp_path / "o.safetensors")], catch_exceptions=False)
