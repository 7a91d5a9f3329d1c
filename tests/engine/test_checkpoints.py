"""load_base_model: random-weight single files (LDM layout) and diffusers folders load offline, weights intact."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from loradeck.engine.checkpoints import load_base_model
from loradeck.errors import FormatError, ModelLoadError
from loradeck.families import Family
from loradeck.formats.ldm_keys import to_diffusers
from tests.helpers.checkpoints import FAMILY_OF, write_checkpoint, write_tokenizer

NAMES = ["sd15", "sd2v", "sdxl"]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return write_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return {
        name: (root / f"{name}.safetensors", write_checkpoint(root / f"{name}.safetensors", name)) for name in NAMES
    }


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path, monkeypatch):
    """No tokenizer may come from the developer's own Hugging Face cache."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def _same_weights(model, expected: dict[str, torch.Tensor]) -> bool:
    got = model.state_dict()
    return got.keys() == expected.keys() and all(torch.equal(got[k], expected[k].to(got[k].dtype)) for k in got)


@pytest.mark.parametrize("name", NAMES)
def test_single_file_loads_with_the_weights_written(files, tok, name):
    path, written = files[name]
    model = load_base_model(path, tokenizer_dir=tok)
    family = FAMILY_OF[name]
    assert (model.family, model.name, model.path, model.layout) == (family, name, path, "single-file")
    expected = to_diffusers(written, family)
    assert _same_weights(model.unet, expected["unet"])
    assert _same_weights(model.vae, expected["vae"])
    assert _same_weights(model.text_encoder, expected["text_encoder"])
    if family == Family.SDXL:
        assert _same_weights(model.text_encoder_2, expected["text_encoder_2"])
        assert model.tokenizer_2 is not None
    else:
        assert model.text_encoder_2 is None and model.tokenizer_2 is None
    assert model.text_encoder.config.eos_token_id == model.tokenizer.eos_token_id  # CLIP pools at this id
    assert model.prediction_type == ("v_prediction" if name == "sd2v" else "epsilon")
    assert model.scheduler_config["prediction_type"] == model.prediction_type
    assert model.sample_size == {"sd15": 512, "sd2v": 768, "sdxl": 1024}[name]


def test_openclip_tokenizers_pad_with_exclamation_mark(files, tok):
    sd1 = load_base_model(files["sd15"][0], tokenizer_dir=tok)
    sd2 = load_base_model(files["sd2v"][0], tokenizer_dir=tok)
    xl = load_base_model(files["sdxl"][0], tokenizer_dir=tok)
    eos = sd1.tokenizer.eos_token_id
    assert (sd1.tokenizer.pad_token, sd1.tokenizer.pad_token_id) == ("<|endoftext|>", eos)
    assert (xl.tokenizer.pad_token, xl.tokenizer.pad_token_id) == ("<|endoftext|>", eos)
    for t in (sd2.tokenizer, xl.tokenizer_2):
        assert (t.pad_token, t.pad_token_id) == ("!", 0)
        ids = t("a red circle", padding="max_length", max_length=77).input_ids
        assert len(ids) == 77 and ids[ids.index(eos) + 1 :] == [0] * (76 - ids.index(eos))


def test_dtype_and_ckpt_format(tmp_path, files, tok):
    path, written = files["sd15"]
    half = load_base_model(path, tokenizer_dir=tok, dtype=torch.float16)
    assert {p.dtype for p in half.unet.parameters()} == {torch.float16}
    ckpt = tmp_path / "same.ckpt"
    torch.save({"state_dict": written}, ckpt)
    again = load_base_model(ckpt, tokenizer_dir=tok)
    assert _same_weights(again.unet, to_diffusers(written, Family.SD1)["unet"])


def test_prediction_sources(tmp_path, files, tok):
    path, written = files["sd2v"]
    assert load_base_model(path, tokenizer_dir=tok, prediction="epsilon").prediction_type == "epsilon"
    side = tmp_path / "m.safetensors"
    side.write_bytes(path.read_bytes())
    side.with_suffix(".yaml").write_text("model:\n  params:\n    linear_start: 0.00085\n")  # v2-inference.yaml
    base = load_base_model(side, tokenizer_dir=tok)
    assert (base.prediction_type, base.sample_size) == ("epsilon", 512)


def test_tokenizer_from_a_diffusers_folder_beside_the_checkpoint(tmp_path, files, tok):
    import shutil

    path, _ = files["sd15"]
    (tmp_path / "models").mkdir()
    ckpt = tmp_path / "models" / path.name
    shutil.copy(path, ckpt)
    folder = tmp_path / "models" / "some-sd"
    (folder).mkdir()
    (folder / "model_index.json").write_text("{}")
    shutil.copytree(tok, folder / "tokenizer")
    assert load_base_model(ckpt).tokenizer.get_vocab() == load_base_model(path, tokenizer_dir=tok).tokenizer.get_vocab()


def test_tokenizer_from_the_hugging_face_cache(tmp_path, files, tok, monkeypatch):
    import shutil

    import huggingface_hub.constants

    cache = tmp_path / "hf"
    snap = cache / "models--openai--clip-vit-large-patch14" / "snapshots" / "abc123"
    shutil.copytree(tok, snap)
    (cache / "models--openai--clip-vit-large-patch14" / "refs").mkdir()
    (cache / "models--openai--clip-vit-large-patch14" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    model = load_base_model(files["sdxl"][0])
    assert model.tokenizer_2.pad_token == "!" and len(model.tokenizer) == len(model.tokenizer_2)


def test_missing_tokenizer_is_one_sentence(files):
    with pytest.raises(ModelLoadError) as err:
        load_base_model(files["sd15"][0])
    msg = str(err.value)
    assert msg.startswith("No CLIP tokenizer found for sd15.safetensors:")
    assert "--tokenizer DIR" in msg and "huggingface-cli download openai/clip-vit-large-patch14" in msg
    assert msg.count(". ") == 0 and msg.endswith(".") and "\n" not in msg


def test_diffusers_folder_loads(tmp_path, files, tok):
    from diffusers import StableDiffusionPipeline

    src = load_base_model(files["sd2v"][0], tokenizer_dir=tok)
    pipe = StableDiffusionPipeline(
        vae=src.vae,
        text_encoder=src.text_encoder,
        tokenizer=src.tokenizer,
        unet=src.unet,
        scheduler=_scheduler(src),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(tmp_path / "sd2-folder")
    model = load_base_model(tmp_path / "sd2-folder")
    assert (model.family, model.layout, model.prediction_type) == (Family.SD2, "diffusers", "v_prediction")
    assert _same_weights(model.unet, src.unet.state_dict())
    assert _same_weights(model.text_encoder, src.text_encoder.state_dict())
    assert model.tokenizer.pad_token == "!"


# ------------------------------------------------------------------------------------------------ bad files
def test_truncated_file_names_the_file(tmp_path, files, tok):
    path, _ = files["sd15"]
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(FormatError) as err:
        load_base_model(bad, tokenizer_dir=tok)
    assert str(bad) in str(err.value) and "truncated" in str(err.value)


def test_hostile_header_and_pickle(tmp_path, tok):
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes((10 * 2**30).to_bytes(8, "little") + b"{}")
    with pytest.raises(FormatError, match="huge.safetensors"):
        load_base_model(huge, tokenizer_dir=tok)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"state_dict": Evil()}))
    with pytest.raises(FormatError, match="evil.ckpt"):
        load_base_model(evil, tokenizer_dir=tok)


def test_not_a_base_model(tmp_path, tok):
    from safetensors.torch import save_file

    lora = tmp_path / "style.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 320)}, str(lora))
    with pytest.raises(ModelLoadError, match=r"style\.safetensors: this looks like a LoRA"):
        load_base_model(lora, tokenizer_dir=tok)


# ------------------------------------------------------------------------------------------------ generation
def _scheduler(model):
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler.from_config(model.scheduler_config)


def _pipeline(model):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    parts = dict(vae=model.vae, text_encoder=model.text_encoder, tokenizer=model.tokenizer, unet=model.unet)
    parts["scheduler"] = _scheduler(model)
    if model.family == Family.SDXL:
        return StableDiffusionXLPipeline(text_encoder_2=model.text_encoder_2, tokenizer_2=model.tokenizer_2, **parts)
    return StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def _generate(model) -> np.ndarray:
    pipe = _pipeline(model)
    pipe.set_progress_bar_config(disable=True)
    gen = torch.Generator().manual_seed(1)
    out = pipe("a red circle", num_inference_steps=2, height=64, width=64, generator=gen, output_type="np")
    return out.images


@pytest.mark.parametrize("name", NAMES)
def test_generates_64px_in_2_steps(files, tok, name):
    model = load_base_model(files[name][0], tokenizer_dir=tok)
    images = _generate(model)
    assert images.shape == (1, 64, 64, 3) and np.isfinite(images).all()
    assert images.std() > 0  # a picture, not a constant


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_full_size_single_file(tmp_path, tok, name):
    path = tmp_path / f"{name}-full.safetensors"
    written = write_checkpoint(path, name, reduced=False, dtype=torch.float16)
    # SDXL in fp32 (10 GB U-Net) next to the written file would crowd a 24 GB machine: load it as written, in fp16.
    dtype = torch.float16 if name == "sdxl" else torch.float32
    model = load_base_model(path, tokenizer_dir=tok, dtype=dtype)
    expected = to_diffusers(written, FAMILY_OF[name])
    del written
    assert _same_weights(model.unet, expected["unet"])
    assert _same_weights(model.text_encoder, expected["text_encoder"])
    images = _generate(model)
    assert images.shape == (1, 64, 64, 3) and np.isfinite(images).all()
