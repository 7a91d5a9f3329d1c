"""A LoRA applied by prompt tag draws the same picture as the same LoRA baked into the checkpoint."""

from __future__ import annotations

import numpy as np

from loradeck.engine.checkpoints import load_base_model
from loradeck.lora.bake import merge_into_checkpoint
from loradeck.services.studio import Studio
from loradeck.vocab import GenerationRequest
from tests.helpers.checkpoints import write_checkpoint, write_tokenizer
from tests.helpers.loras import write_lora_for


def test_tag_equals_merge_into(tmp_path):
    models, loras = tmp_path / "models", tmp_path / "loras"
    models.mkdir()
    base_path = models / "base.safetensors"
    write_checkpoint(base_path, "sd15", seed=3)
    tokenizer = write_tokenizer(tmp_path / "tokenizer")
    lora = write_lora_for(
        load_base_model(base_path, tokenizer_dir=tokenizer), loras / "x.safetensors", seed=4, scale=0.2
    )
    merge_into_checkpoint(base_path, [(lora, 0.7)], models / "baked.safetensors")

    studio = Studio(home=tmp_path / "home", models_dir=models, lora_dir=loras, tokenizer_dir=tokenizer)

    def draw(checkpoint: str, prompt: str) -> np.ndarray:
        request = GenerationRequest(
            prompt, seed=11, steps=4, width=64, height=64, checkpoint=checkpoint, save=False, sampler="Euler"
        )
        result = studio.generate(request)
        assert not [w for w in result.warnings if "x" in w and "LoRA" in w], result.warnings
        return np.asarray(result.images[0].image).astype(int)

    plain = draw("base.safetensors", "a red circle")
    tagged = draw("base.safetensors", "a red circle <lora:x:0.7>")
    baked = draw("baked.safetensors", "a red circle")
    assert np.abs(tagged - plain).max() > 8  # the LoRA does change the picture
    assert np.abs(tagged - baked).max() <= 1  # ≤ 1/255


def test_dyn_in_the_tag_truncates_the_bundled_lora(tmp_path):
    studio = Studio(home=tmp_path / "home")

    def draw(tag: str) -> np.ndarray:
        request = GenerationRequest(f"a red circle on a blue background {tag}", seed=2, steps=6, save=False)
        return np.asarray(studio.generate(request).images[0].image).astype(int)

    full, one, above = draw("<lora:stripy:1>"), draw("<lora:stripy:1:1:1>"), draw("<lora:stripy:1:1:1000>")
    assert (above == full).all()  # dyn at or above the rank changes nothing
    assert np.abs(one - full).max() > 0  # rank 1 of the LoRA draws something else


def test_styles_expand_before_tags_are_read(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "styles.csv").write_text('name,prompt,negative_prompt\nstriped,"{prompt} <lora:stripy:0.8>",blurry\n')
    studio = Studio(home=home)
    request = GenerationRequest("a red circle on a blue background", styles=["striped"], seed=3, steps=4, save=False)
    result = studio.generate(request)
    info = result.images[0].infotext
    assert info.startswith("a red circle on a blue background <lora:stripy:0.8>\nNegative prompt: blurry\n")
    assert "Lora hashes:" in info and "stripy" in info.splitlines()[-1]  # the style's LoRA was applied
    plain = studio.generate(
        GenerationRequest(
            "a red circle on a blue background <lora:stripy:0.8>", negative_prompt="blurry", seed=3, steps=4, save=False
        )
    )
    assert (np.asarray(plain.images[0].image) == np.asarray(result.images[0].image)).all()
