"""Textual-inversion embeddings in whole generations: pictures against plain diffusers ``load_textual_inversion``
(same model, same initial noise), the family check, embeddings bundled in a LoRA, ``TI hashes`` and their read-back.

Random-weight reduced checkpoints built from the package's configs (text-encoder widths kept: 768, 1280) and the
embedded demo model (width 64). Embedding files are written here in each layout A1111 reads.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from loradeck.engine.checkpoints import load_base_model
from loradeck.engine.schedulers import make_scheduler
from loradeck.prompt.infotext import infotext_settings
from loradeck.services.studio import Studio
from loradeck.vocab import GenerationRequest
from tests.helpers.checkpoints import write_checkpoint, write_tokenizer
from tests.helpers.loras import write_demo_lora

SEED, STEPS, SIZE = 21, 4, 64


def _vectors(n: int, width: int, seed: int, scale: float = 0.05) -> torch.Tensor:
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed)) * scale


def _sha12(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(int)


def _diffusers_picture(pipe, prompt: str, negative: str) -> np.ndarray:
    """Plain diffusers: its own prompt encoding (with the textual-inversion tokens it loaded), our seed's noise."""
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        prompt=prompt, negative_prompt=negative, num_inference_steps=STEPS, guidance_scale=7.0, width=SIZE,
        height=SIZE, generator=[torch.Generator("cpu").manual_seed(SEED)], output_type="np",
    ).images[0]  # fmt: skip
    return np.round(out * 255).clip(0, 255).astype(int)


def _setup(tmp_path: Path, family: str) -> tuple[Path, Path, Path]:
    models, tokenizer = tmp_path / "models", write_tokenizer(tmp_path / "tokenizer")
    write_checkpoint(models / "base.safetensors", family, seed=3)
    embeddings = tmp_path / "home" / "models" / "embeddings"
    embeddings.mkdir(parents=True)
    return models, tokenizer, embeddings


def _ours(studio: Studio, prompt: str, negative: str):
    request = GenerationRequest(
        prompt, negative_prompt=negative, seed=SEED, steps=STEPS, width=SIZE, height=SIZE, sampler="Euler",
        checkpoint="base.safetensors", save=False,
    )  # fmt: skip
    return studio.generate(request)


def test_sd1_positive_and_negative_embeddings_equal_diffusers(tmp_path):
    from diffusers import StableDiffusionPipeline

    models, tokenizer, folder = _setup(tmp_path, "sd15")
    save_file({"emb_params": _vectors(2, 768, 1)}, str(folder / "zzq.safetensors"))  # kohya SD1 layout, 2 vectors
    pt = {"string_to_param": {"*": _vectors(3, 768, 2)}, "name": "qvx", "step": 1500, "sd_checkpoint": "abc"}
    torch.save(pt, folder / "qvx.pt")  # A1111's own layout
    studio = Studio(home=tmp_path / "home", models_dir=models, tokenizer_dir=tokenizer)
    prompt, negative = "a red circle zzq", "qvx"
    result = _ours(studio, prompt, negative)
    assert not result.warnings, result.warnings

    base = load_base_model(models / "base.safetensors", tokenizer_dir=tokenizer)
    pipe = StableDiffusionPipeline(
        vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=base.unet,
        scheduler=make_scheduler(base.scheduler_config, "Euler", "Automatic"), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.load_textual_inversion(str(folder / "zzq.safetensors"), token="zzq")
    pipe.load_textual_inversion(str(folder / "qvx.pt"), token="qvx")
    want = _diffusers_picture(pipe, prompt, negative)
    got = _pixels(result.images[0].image)
    assert np.abs(got - want).max() <= 2  # ≤ 2/255
    plain = _pixels(_ours(studio, "a red circle", "").images[0].image)
    assert np.abs(got - plain).max() > 8  # the embeddings do change the picture

    info = result.images[0].infotext
    ti = f"zzq: {_sha12(folder / 'zzq.safetensors')}, qvx: {_sha12(folder / 'qvx.pt')}"
    assert f'TI hashes: "{ti}"' in info and result.ti_hashes == ti
    assert infotext_settings(info).ti_hashes == {
        "zzq": _sha12(folder / "zzq.safetensors"),
        "qvx": _sha12(folder / "qvx.pt"),
    }


def test_sdxl_clip_l_clip_g_equal_diffusers_and_an_sd1_embedding_is_skipped(tmp_path):
    from diffusers import StableDiffusionXLPipeline

    models, tokenizer, folder = _setup(tmp_path, "sdxl")
    clip_l, clip_g = _vectors(2, 768, 3), _vectors(2, 1280, 4)
    save_file({"clip_l": clip_l, "clip_g": clip_g}, str(folder / "xlneg.safetensors"))
    save_file({"emb_params": _vectors(1, 768, 5)}, str(folder / "zzq.safetensors"))  # SD 1.x: not for SDXL
    studio = Studio(home=tmp_path / "home", models_dir=models, tokenizer_dir=tokenizer)
    prompt, negative = "a red circle zzq", "xlneg"
    result = _ours(studio, prompt, negative)
    skipped = [w for w in result.warnings if "zzq" in w]
    assert skipped == [
        "Embedding zzq is for SD1 but the model is SDXL; it was skipped (its name is read as plain words)."
    ]

    base = load_base_model(models / "base.safetensors", tokenizer_dir=tokenizer)
    pipe = StableDiffusionXLPipeline(
        vae=base.vae, text_encoder=base.text_encoder, text_encoder_2=base.text_encoder_2, tokenizer=base.tokenizer,
        tokenizer_2=base.tokenizer_2, unet=base.unet, scheduler=make_scheduler(base.scheduler_config, "Euler", "Automatic"),
    )  # fmt: skip
    pipe.load_textual_inversion(clip_l, token="xlneg", text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(clip_g, token="xlneg", text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)
    want = _diffusers_picture(pipe, prompt, negative)  # "zzq" stays plain words for diffusers too
    assert np.abs(_pixels(result.images[0].image) - want).max() <= 2
    assert result.ti_hashes == f"xlneg: {_sha12(folder / 'xlneg.safetensors')}"


def _demo_request(prompt: str, negative: str = "") -> GenerationRequest:
    return GenerationRequest(prompt, negative_prompt=negative, seed=4, steps=4, width=32, height=32, save=False)


def test_bundled_embeddings_act_with_their_lora_only(tmp_path):
    """A LoRA's ``bundle_emb.NAME.…`` embedding draws what the same vectors draw from the embeddings folder, while
    the LoRA is in the prompt; without the LoRA its name is plain words. Demo model (text-encoder width 64)."""
    from safetensors.torch import load_file

    vectors = _vectors(2, 64, 7, scale=0.5)
    home_a, home_b = tmp_path / "a", tmp_path / "b"
    plain_lora = write_demo_lora(home_b / "models" / "Lora" / "inky.safetensors", seed=3)
    tensors = load_file(str(plain_lora)) | {"bundle_emb.blotq.string_to_param.*": vectors}
    (home_a / "models" / "Lora").mkdir(parents=True)
    save_file(tensors, str(home_a / "models" / "Lora" / "inky.safetensors"))
    (home_b / "models" / "embeddings").mkdir(parents=True)
    save_file({"emb_params": vectors}, str(home_b / "models" / "embeddings" / "blotq.safetensors"))

    bundled, from_folder = Studio(home=home_a), Studio(home=home_b)
    lora = bundled.load_lora_file(home_a / "models" / "Lora" / "inky.safetensors")
    assert list(lora.embeddings) == ["blotq"] and not lora.unparsed_keys
    prompt = "a red circle blotq <lora:inky:0.5>"
    a = bundled.generate(_demo_request(prompt))
    b = from_folder.generate(_demo_request(prompt))
    assert np.array_equal(_pixels(a.images[0].image), _pixels(b.images[0].image))
    assert (
        a.ti_hashes == "" and b.ti_hashes == f"blotq: {_sha12(home_b / 'models' / 'embeddings' / 'blotq.safetensors')}"
    )
    # without the LoRA, the bundled embedding is not there: the name is read as words, as with no embedding at all
    words = bundled.generate(_demo_request("a red circle blotq"))
    none = Studio(home=tmp_path / "c").generate(_demo_request("a red circle blotq"))
    assert np.array_equal(_pixels(words.images[0].image), _pixels(none.images[0].image))
    assert not np.array_equal(
        _pixels(words.images[0].image),
        _pixels(bundled.generate(_demo_request("a red circle blotq <lora:inky:0>")).images[0].image),
    )


def test_emphasis_and_negative_on_the_demo_model(tmp_path):
    folder = tmp_path / "models" / "embeddings"
    folder.mkdir(parents=True)
    save_file({"emb_params": _vectors(1, 64, 9, scale=0.5)}, str(folder / "blotq.safetensors"))
    studio = Studio(home=tmp_path)
    one = studio.generate(_demo_request("a red circle", "blotq"))
    weighted = studio.generate(_demo_request("a red circle", "(blotq:1.5)"))
    plain = studio.generate(_demo_request("a red circle"))
    assert not np.array_equal(_pixels(one.images[0].image), _pixels(plain.images[0].image))
    assert not np.array_equal(_pixels(one.images[0].image), _pixels(weighted.images[0].image))
    assert one.ti_hashes == weighted.ti_hashes == f"blotq: {_sha12(folder / 'blotq.safetensors')}"
    assert "TI hashes" not in plain.images[0].infotext
