"""Model families as modules (loradeck/arch): the registry, what each declares, and the places that still branch."""

from __future__ import annotations

import re
from pathlib import Path

from loradeck.arch import ARCHS, checkpoint_family, lora_family_by_names, native_size
from loradeck.demo.paths import demo_native_size
from loradeck.families import Family
from loradeck.lora.keymap import keymap_for_family

SRC = Path(__file__).resolve().parents[1] / "src" / "loradeck"


def test_every_family_has_one_arch_with_one_denoiser():
    assert set(ARCHS) == set(Family) - {Family.UNKNOWN}
    for family, arch in ARCHS.items():
        assert arch.family is family
        assert arch.denoiser.name in ("unet", "transformer")
        assert arch.text_encoders


def test_native_sizes():
    assert native_size(Family.DEMO) == demo_native_size()
    assert [native_size(f) for f in (Family.SD1, Family.SD2, Family.SDXL, Family.FLUX)] == [512, 512, 1024, 1024]
    assert native_size(Family.UNKNOWN) == 512


def test_lora_prefixes_declared_are_the_keymaps():
    """Every canonical LoRA module name of a family's keymap starts with the kohya prefix its Arch declares for
    the component the name resolves to."""
    for family in (Family.SD1, Family.SD2, Family.SDXL, Family.DEMO, Family.FLUX):
        arch, km = ARCHS[family], keymap_for_family(family)
        for name, ref in km.modules.items():
            assert name.startswith(arch.lora_prefix_of(ref.component)), (family, name)


def test_checkpoint_family_from_markers():
    te = "encoder.layers.0.self_attn.q_proj.weight"
    assert checkpoint_family([f"cond_stage_model.transformer.text_model.{te}"]) is Family.SD1
    assert checkpoint_family(["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"]) is Family.SD2
    xl = [f"conditioner.embedders.0.transformer.text_model.{te}", "conditioner.embedders.1.model.ln_final.weight"]
    assert checkpoint_family(xl) is Family.SDXL
    assert checkpoint_family(["double_blocks.0.img_attn.qkv.weight", "img_in.weight"]) is Family.FLUX
    assert checkpoint_family(["model.diffusion_model.double_blocks.0.img_attn.qkv.weight"]) is Family.FLUX
    assert checkpoint_family(["something.else"]) is Family.UNKNOWN


def test_flux_lora_names_prove_the_family():
    assert lora_family_by_names(["lora_unet_double_blocks_0_img_attn_qkv"]) is Family.FLUX
    assert lora_family_by_names(["lora_te3_encoder_block_0_layer_0_SelfAttention_q"]) is Family.FLUX
    assert lora_family_by_names(["lora_unet_down_blocks_0_attentions_0_proj_in"]) is None


# The modules outside arch/ that still branch on a family by name. The list may only shrink: a new module that
# branches on a family should read its Arch instead (move the difference into arch/<family>.py).
STILL_BRANCHING = {
    "engine/checkpoints.py",
    "engine/conditioning.py",
    "engine/flux.py",
    "engine/pipeline.py",
    "engine/tokenizers.py",
    "formats/embeddings.py",
    "formats/ldm_configs.py",
    "formats/ldm_family.py",
    "formats/ldm_keys.py",
    "formats/sidecars.py",
    "library/detect.py",
    "lora/files/shapes.py",
    "lora/files/write.py",
    "lora/flux_keys.py",
    "lora/formats.py",
    "lora/keymap.py",
    "services/generation.py",
    "services/models.py",
    "services/plan.py",
    "services/studio.py",
    "tools/checkpoints.py",
    "tools/run.py",
    "train/loop.py",
    "train/output.py",
    "train/sampling.py",
}
_BRANCH = re.compile(r"Family\.(SD1|SD2|SDXL|DEMO|FLUX)\b|text_encoder_2 is not None|is_sdxl")


def test_no_new_module_branches_on_a_family():
    found = set()
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("arch/") or rel == "families.py":
            continue
        if _BRANCH.search(path.read_text()):
            found.add(rel)
    assert found <= STILL_BRANCHING, sorted(found - STILL_BRANCHING)
