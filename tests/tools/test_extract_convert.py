"""extract recovers a known ΔW and draws what merge-into draws; outputs load in diffusers with no leftover keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loradeck.engine.checkpoints import load_base_model
from loradeck.families import Family
from loradeck.lora.bake import merge_into_checkpoint
from loradeck.lora.formats import load_lora
from loradeck.lora.inspect import inspect_lora
from loradeck.lora.keymap import keymap_for_family
from loradeck.services.studio import Studio
from loradeck.tools import ConvertRequest, ExtractRequest, MergeRequest, run_tool
from loradeck.vocab import GenerationRequest
from tests.helpers.checkpoints import write_checkpoint, write_tokenizer
from tests.helpers.loras import write_lora_for


def _flat(lora_path) -> dict[str, torch.Tensor]:
    """s·up@down per module, straight from the kohya tensors (independent of lora.files)."""
    lora = load_lora(lora_path)
    out = {}
    for spec in lora.modules.values():
        up, down = spec.tensors["lora_up.weight"].float(), spec.tensors["lora_down.weight"].float()
        s = (spec.alpha or up.shape[1]) / up.shape[1]
        out[spec.name] = s * up.reshape(up.shape[0], -1) @ down.reshape(down.shape[0], -1)
    return out


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("extract")
    models, loras = tmp / "models", tmp / "loras"
    models.mkdir()
    base_path = models / "base.safetensors"
    write_checkpoint(base_path, "sd15", seed=3)
    tokenizer = write_tokenizer(tmp / "tokenizer")
    original = write_lora_for(
        load_base_model(base_path, tokenizer_dir=tokenizer), loras / "orig.safetensors", seed=4, scale=0.2, rank=4
    )
    merge_into_checkpoint(base_path, [(original, 1.0)], models / "tuned.safetensors")
    result = run_tool(
        ExtractRequest(
            base=base_path,
            tuned=models / "tuned.safetensors",
            rank=4,
            min_diff=0.0,
            precision="fp32",
            lora_dir=loras,
            name="ext",
        )  # fmt: skip
    )
    return {"tmp": tmp, "models": models, "loras": loras, "tokenizer": tokenizer, "original": original,
            "result": result}  # fmt: skip


def test_extract_recovers_the_known_delta(extracted):
    result = extracted["result"]
    assert result.path == extracted["loras"] / "ext.safetensors"
    want, got = _flat(extracted["original"]), _flat(result.path)
    assert set(got) == set(want)
    for name, w in want.items():
        assert float((got[name] - w).norm() / w.norm()) <= 1e-4, name
    assert result.retained == pytest.approx(1.0, abs=1e-6)  # rank 4 of a rank-4 difference keeps everything
    info = inspect_lora(result.path)
    assert info["rank"] == 4 and info["alpha"] == 4.0 and info["family"] == "sd1"
    meta = load_lora(result.path).metadata
    assert meta["ss_network_dim"] == "4" and meta["ss_output_name"] == "ext"
    assert '"tool": "extract"' in meta["loradeck.tool"]


def test_extracted_lora_draws_what_merge_into_draws(extracted):
    studio = Studio(home=extracted["tmp"] / "home", models_dir=extracted["models"], lora_dir=extracted["loras"],
                    tokenizer_dir=extracted["tokenizer"])  # fmt: skip

    def draw(checkpoint: str, prompt: str) -> np.ndarray:
        request = GenerationRequest(prompt, seed=11, steps=4, width=64, height=64, checkpoint=checkpoint, save=False,
                                    sampler="Euler")  # fmt: skip
        return np.asarray(studio.generate(request).images[0].image).astype(int)

    plain = draw("base.safetensors", "a red circle")
    tagged = draw("base.safetensors", "a red circle <lora:ext:1>")
    baked = draw("tuned.safetensors", "a red circle")
    assert np.abs(tagged - plain).max() > 8
    assert np.abs(tagged - baked).max() <= 1  # ≤ 1/255


def test_extract_skips_unchanged_text_encoder_and_says_so(extracted, tmp_path):
    models = extracted["models"]
    result = run_tool(ExtractRequest(base=models / "base.safetensors", tuned=models / "tuned.safetensors", rank=2,
                                     min_diff=1e9, out=tmp_path / "unet-only.safetensors"))  # fmt: skip
    assert result.notes and all(n.startswith("lora_te_") and "skipped" in n for n in result.notes)
    assert all(n.startswith("lora_unet_") for n in load_lora(result.path).modules)


def _leftover_warnings(monkeypatch) -> list[str]:
    import diffusers.utils.peft_utils as peft_utils

    warnings: list[str] = []
    monkeypatch.setattr(peft_utils.logger, "warning", lambda msg, *a, **k: warnings.append(str(msg)))
    return warnings


@pytest.mark.parametrize("to", ["merge", "peft", "comfy", "kohya"])
def test_outputs_load_in_diffusers_with_no_leftover_keys(to, tmp_path, monkeypatch):
    """On the demo model: every written module becomes a diffusers LoRA layer, and fusing it moves the weights
    by the same ΔW loradeck merges."""
    from diffusers import StableDiffusionPipeline
    from peft.tuners.lora import LoraLayer

    from loradeck.demo.paths import demo_model_dir

    from .conftest import dense, lora_file

    a, b = lora_file(tmp_path / "a.safetensors", seed=1), lora_file(tmp_path / "b.safetensors", seed=2, rank=2)
    out = tmp_path / f"{to}.safetensors"
    if to == "merge":
        run_tool(MergeRequest(inputs=[(a, 0.7), (b, 0.3)], rank=3, out=out, precision="fp32"))
    elif to == "kohya":  # a diffusers/PEFT file back to kohya names
        run_tool(ConvertRequest(input=a, to="peft", out=tmp_path / "p.safetensors", precision="fp32"))
        run_tool(ConvertRequest(input=tmp_path / "p.safetensors", to="kohya", out=out, precision="fp32"))
        assert load_lora(tmp_path / "p.safetensors").layout == "diffusers" and load_lora(out).layout == "kohya"
    else:
        run_tool(ConvertRequest(input=a, to=to, out=out, precision="fp32"))
    warnings = _leftover_warnings(monkeypatch)
    pipe = StableDiffusionPipeline.from_pretrained(demo_model_dir(), safety_checker=None, requires_safety_checker=False)
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    pipe.load_lora_weights(str(out))
    assert not warnings
    layers = sum(isinstance(m, LoraLayer) for part in (pipe.unet, pipe.text_encoder) for m in part.modules())
    assert layers == len(load_lora(out).modules)
    pipe.fuse_lora(lora_scale=1.0)
    pipe.unload_lora_weights()
    name = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    key = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    moved = pipe.unet.state_dict()[key] - before[key]
    torch.testing.assert_close(moved, dense(out)[name].reshape(moved.shape), rtol=1e-4, atol=1e-5)


def test_extract_between_diffusers_folders_from_the_demo_model(tmp_path):
    """Base ``demo`` (the embedded diffusers folder), tuned = a copy with one attention weight moved by a known
    rank-2 ΔW: that module comes back at rank 2, every other one is skipped and listed."""
    import shutil

    from safetensors.torch import load_file, save_file

    from loradeck.demo.paths import demo_model_dir

    tuned = tmp_path / "tuned"
    shutil.copytree(demo_model_dir(), tuned)  # a copy outside the package: its family is not declared (unknown)
    weights = tuned / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    key = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v.weight"
    g = torch.Generator().manual_seed(0)
    delta = torch.randn(state[key].shape[0], 2, generator=g) @ torch.randn(2, state[key].shape[1], generator=g) * 0.05
    state[key] = state[key] + delta
    save_file(state, str(weights))
    result = run_tool(ExtractRequest(base="demo", tuned=tuned, rank=2, out=tmp_path / "x.safetensors",
                                     precision="fp32"))  # fmt: skip
    name = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_v"
    got = _flat(result.path)
    assert list(got) == [name]
    assert float((got[name] - delta).norm() / delta.norm()) <= 1e-4
    assert len(result.notes) == len(keymap_for_family(Family.DEMO).modules) - 1
    assert all("identical in both models" in n or "--min-diff" in n for n in result.notes)
