"""Prompt conditioning against diffusers' own encode_prompt and against A1111's formulas.

Random-weight text encoders built from the shipped configs (reduced width and depth), with the offline test
tokenizer of ``tests.prompt.tokenizers`` (CLIP-L pads with EOS, OpenCLIP with "!").
"""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

import loradeck
from loradeck.engine.conditioning import apply_emphasis, encode_prompt_pair, encode_prompts
from loradeck.errors import InvalidRequest
from loradeck.families import Family
from loradeck.prompt.chunks import tokenize_prompt
from tests.prompt.tokenizers import clip_tokenizer

CONFIGS = Path(loradeck.__file__).parent / "configs"
LONG = " ".join(["cat", "dog", "sky", "sun", "tree"] * 20)  # 100 tokens, no comma: chunk 1 = first 75 tokens


def _encoder(family_dir, component, tok, *, width, layers=4, reduced=True, seed=0):
    cfg = json.loads((CONFIGS / family_dir / component / "config.json").read_text())
    cls = CLIPTextModelWithProjection if cfg["architectures"] == ["CLIPTextModelWithProjection"] else CLIPTextModel
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_") and k not in ("architectures", "transformers_version")}
    if reduced:
        cfg.update(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers, num_attention_heads=4)
        cfg.update(projection_dim=width)
    cfg.update(
        vocab_size=max(cfg["vocab_size"], len(tok)) if not reduced else len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = cls(CLIPTextConfig(**cfg)).eval()
    with torch.no_grad():  # non-trivial layer norms, so skipping or applying final_layer_norm shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.2)
    return model


def _diffusers_clip_skip_shim(te):
    """diffusers 0.42 reads ``text_encoder.text_model.final_layer_norm``, which transformers 5 moved to the top."""
    te.text_model = SimpleNamespace(final_layer_norm=te.final_layer_norm)
    return te


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    return (
        clip_tokenizer(tmp_path_factory.mktemp("tok_l")),
        clip_tokenizer(tmp_path_factory.mktemp("tok_g"), pad_token="!"),
    )


@pytest.fixture(scope="module")
def sd1(tokenizers):
    tok = tokenizers[0]
    te = _diffusers_clip_skip_shim(_encoder("sd15", "text_encoder", tok, width=32))
    pipe = StableDiffusionPipeline(
        vae=None, text_encoder=te, tokenizer=tok, unet=None, scheduler=None, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    return pipe


@pytest.fixture(scope="module")
def sd2(tokenizers):
    tok = tokenizers[1]
    te = _diffusers_clip_skip_shim(_encoder("sd2", "text_encoder", tok, width=32))
    return StableDiffusionPipeline(
        vae=None, text_encoder=te, tokenizer=tok, unet=None, scheduler=None, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def sdxl(tokenizers):
    tok_l, tok_g = tokenizers
    te1 = _encoder("sdxl", "text_encoder", tok_l, width=32, seed=1)
    te2 = _encoder("sdxl", "text_encoder_2", tok_g, width=64, seed=2)
    pipe = StableDiffusionXLPipeline(
        vae=None, text_encoder=te1, text_encoder_2=te2, tokenizer=tok_l, tokenizer_2=tok_g, unet=None, scheduler=None
    )
    return pipe


def _ours(pipe, family, prompt, negative="", **kw):
    return encode_prompts(SimpleNamespace(family=family, **pipe.components), prompt, negative, **kw)


# ------------------------------------------------------------------------------------------------ vs diffusers
@pytest.mark.parametrize("clip_skip", [1, 2, 3])
@pytest.mark.parametrize("fixture, family", [("sd1", Family.SD1), ("sd2", Family.SD2)])
def test_sd1_sd2_equal_diffusers(request, fixture, family, clip_skip):
    pipe = request.getfixturevalue(fixture)
    prompt, negative = "a cat on the hill, sun, sky", "dog, tree"
    skip = None if clip_skip == 1 else clip_skip - 1  # diffusers counts skipped layers: A1111's n is diffusers' n-1
    ref_pos, _ = pipe.encode_prompt(prompt, "cpu", 1, False, clip_skip=skip)
    # diffusers applies clip skip to the prompt only; A1111 (and we) to the negative prompt too
    ref_neg, _ = pipe.encode_prompt(negative, "cpu", 1, False, clip_skip=skip)
    cond = _ours(pipe, family, prompt, negative, clip_skip=clip_skip)
    assert torch.equal(cond.prompt_embeds, ref_pos)
    assert torch.equal(cond.negative_prompt_embeds, ref_neg)
    assert cond.pooled_prompt_embeds is None
    if clip_skip == 1:
        assert torch.equal(cond.negative_prompt_embeds, pipe.encode_prompt(prompt, "cpu", 1, True, negative)[1])


def test_clip_skip_changes_the_result(sd1):
    a = _ours(sd1, Family.SD1, "a cat").prompt_embeds
    b = _ours(sd1, Family.SD1, "a cat", clip_skip=2).prompt_embeds
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("clip_skip, diffusers_skip", [(1, None), (2, None), (3, 1)])
def test_sdxl_equals_diffusers(sdxl, clip_skip, diffusers_skip):
    prompt, negative = "a cat on the hill, sun", "dog"

    def encode(text):  # diffusers applies clip skip to the prompt only, so encode the negative as a prompt
        return sdxl.encode_prompt(text, device="cpu", do_classifier_free_guidance=False, clip_skip=diffusers_skip)

    ref, ref_neg = encode(prompt), encode(negative)
    cond = _ours(sdxl, Family.SDXL, prompt, negative, clip_skip=clip_skip)
    assert cond.prompt_embeds.shape == (1, 77, 32 + 64)
    assert torch.equal(cond.prompt_embeds, ref[0])
    assert torch.equal(cond.negative_prompt_embeds, ref_neg[0])
    assert torch.equal(cond.pooled_prompt_embeds, ref[2])
    assert torch.equal(cond.negative_pooled_prompt_embeds, ref_neg[2])
    if diffusers_skip is None:  # and with CFG in one call, as a pipeline does
        full = sdxl.encode_prompt(prompt, device="cpu", do_classifier_free_guidance=True, negative_prompt=negative)
        assert torch.equal(cond.negative_prompt_embeds, full[1])
        assert torch.equal(cond.negative_pooled_prompt_embeds, full[3])


def test_sdxl_empty_negative_is_zeros_as_diffusers(sdxl):
    ref = sdxl.encode_prompt("a cat", device="cpu", do_classifier_free_guidance=True, negative_prompt=None)
    cond = _ours(sdxl, Family.SDXL, "a cat", "")
    assert torch.equal(cond.negative_prompt_embeds, ref[1]) and not cond.negative_prompt_embeds.any()
    assert torch.equal(cond.negative_pooled_prompt_embeds, ref[3]) and not cond.negative_pooled_prompt_embeds.any()


def test_sd1_empty_negative_is_encoded(sd1):
    _, ref_neg = sd1.encode_prompt("a cat", "cpu", 1, True, "")
    assert torch.equal(_ours(sd1, Family.SD1, "a cat", "").negative_prompt_embeds, ref_neg)


# ------------------------------------------------------------------------------------------------ chunks
def _direct(te, ids, *, layer=None, norm=True):
    """Reference encoding of one 77-token chunk straight through the text encoder."""
    out = te(input_ids=torch.tensor([ids]), output_hidden_states=True)
    if layer is None:
        return out.last_hidden_state
    h = out.hidden_states[layer]
    return te.final_layer_norm(h) if norm else h


def test_long_prompt_is_chunked_not_truncated(sd1):
    tok, te = sd1.tokenizer, sd1.text_encoder
    chunks = tokenize_prompt(LONG, tok).chunks
    assert len(chunks) == 2
    cond = _ours(sd1, Family.SD1, LONG, "dog")
    assert cond.prompt_embeds.shape == (1, 154, 32)
    with torch.no_grad():
        expected = torch.cat([_direct(te, c.tokens) for c in chunks], dim=1)
        empty = _direct(te, tokenize_prompt("", tok).chunks[0].tokens)
    assert torch.equal(cond.prompt_embeds, expected)
    # the negative is padded to two chunks with the empty prompt's encoding
    ref_pos, ref_neg = sd1.encode_prompt(LONG, "cpu", 1, True, "dog")
    assert cond.negative_prompt_embeds.shape == (1, 154, 32)
    assert torch.equal(cond.negative_prompt_embeds[:, :77], ref_neg)
    assert torch.equal(cond.negative_prompt_embeds[:, 77:], empty)
    # diffusers truncates to the first chunk: that part agrees
    assert torch.equal(cond.prompt_embeds[:, :77], ref_pos)


def test_sdxl_long_prompt_pooled_from_first_chunk(sdxl):
    ref = sdxl.encode_prompt(LONG, device="cpu", do_classifier_free_guidance=True, negative_prompt="dog")
    cond = _ours(sdxl, Family.SDXL, LONG, "dog")
    assert cond.prompt_embeds.shape == (1, 154, 96) and cond.negative_prompt_embeds.shape == (1, 154, 96)
    assert torch.equal(cond.prompt_embeds[:, :77], ref[0])
    assert torch.equal(cond.pooled_prompt_embeds, ref[2])
    te1, te2 = sdxl.text_encoder, sdxl.text_encoder_2
    second_l = tokenize_prompt(LONG, sdxl.tokenizer).chunks[1].tokens
    second_g = tokenize_prompt(LONG, sdxl.tokenizer_2).chunks[1].tokens
    assert second_g[-1] == 0 and second_l[-1] == sdxl.tokenizer.eos_token_id  # each pads its own way
    with torch.no_grad():
        expected = torch.cat(
            [_direct(te1, second_l, layer=-2, norm=False), _direct(te2, second_g, layer=-2, norm=False)], -1
        )
    assert torch.equal(cond.prompt_embeds[:, 77:], expected)


def test_break_starts_a_new_chunk(sd1):
    cond = _ours(sd1, Family.SD1, "cat BREAK dog")
    ref_cat, _ = sd1.encode_prompt("cat", "cpu", 1, False)
    ref_dog, _ = sd1.encode_prompt("dog", "cpu", 1, False)
    assert torch.equal(cond.prompt_embeds, torch.cat([ref_cat, ref_dog], dim=1))


def test_batch_of_prompts_padded_to_the_longest(sd1):
    cond = _ours(sd1, Family.SD1, ["a cat", LONG], ["dog", ""])
    assert cond.prompt_embeds.shape == (2, 154, 32) and cond.negative_prompt_embeds.shape == (2, 154, 32)
    single = _ours(sd1, Family.SD1, "a cat", "dog")  # one chunk alone
    assert torch.equal(cond.prompt_embeds[0, :77], single.prompt_embeds[0])
    with pytest.raises(InvalidRequest, match="2 prompts but 3 negative"):
        _ours(sd1, Family.SD1, ["a", "b"], ["x", "y", "z"])


# ------------------------------------------------------------------------------------------------ emphasis
def test_emphasis_original_scales_then_restores_the_mean(sd1):
    prompt = "a (cat:1.5) on the [hill]"
    plain = _ours(sd1, Family.SD1, prompt, emphasis="Ignore").prompt_embeds[0]
    weights = torch.tensor(tokenize_prompt(prompt, sd1.tokenizer).chunks[0].weights)
    assert sorted(set(weights.tolist())) == [pytest.approx(1 / 1.1), 1.0, 1.5]
    scaled = plain * weights[:, None]
    expected = scaled * (plain.mean() / scaled.mean())
    got = _ours(sd1, Family.SD1, prompt).prompt_embeds[0]
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    assert got.mean().item() == pytest.approx(plain.mean().item(), rel=1e-5)
    # the weighted token moved, an unweighted one is only rescaled by the mean factor
    assert not torch.allclose(got, plain)


def test_emphasis_no_norm_and_ignore(sd1):
    prompt = "a (cat:1.5) dog"
    plain = _ours(sd1, Family.SD1, prompt, emphasis="Ignore").prompt_embeds[0]
    weights = torch.tensor(tokenize_prompt(prompt, sd1.tokenizer).chunks[0].weights)
    no_norm = _ours(sd1, Family.SD1, prompt, emphasis="No norm").prompt_embeds[0]
    torch.testing.assert_close(no_norm, plain * weights[:, None], rtol=0, atol=0)
    # Ignore: the same tokens as the prompt without brackets
    assert torch.equal(plain, _ours(sd1, Family.SD1, "a cat dog").prompt_embeds[0])


def test_emphasis_none_reads_brackets_as_text(sd1):
    ref, _ = sd1.encode_prompt("a (cat:1.5) BREAK dog", "cpu", 1, False)
    cond = _ours(sd1, Family.SD1, "a (cat:1.5) BREAK dog", emphasis="None")
    assert torch.equal(cond.prompt_embeds, ref)


def test_apply_emphasis_per_chunk_mean():
    z = torch.randn(2, 77, 8) + 0.5
    w = torch.ones(2, 77)
    w[0, 3] = 2.0
    out = apply_emphasis(z, w, "Original")
    assert torch.equal(out[1], z[1])  # the other chunk is untouched
    torch.testing.assert_close(out[0].mean(), z[0].mean())
    assert torch.equal(apply_emphasis(z, torch.ones(2, 77), "Original"), z)


def test_fp16_encoder_keeps_its_dtype(sd1):
    te = sd1.text_encoder.to(torch.float16)
    try:
        cond = encode_prompt_pair(Family.SD1, [sd1.tokenizer], [te], "a (cat:1.3)", "dog")
        assert cond.prompt_embeds.dtype == torch.float16 and torch.isfinite(cond.prompt_embeds).all()
    finally:
        te.to(torch.float32)


# ------------------------------------------------------------------------------------------------ errors
def test_errors(sd1, sdxl):
    with pytest.raises(InvalidRequest, match="Clip skip 5 is more than"):
        _ours(sd1, Family.SD1, "a", clip_skip=5)
    with pytest.raises(InvalidRequest, match="Clip skip must be 1 or more"):
        _ours(sd1, Family.SD1, "a", clip_skip=0)
    with pytest.raises(InvalidRequest, match="two text encoders"):
        encode_prompt_pair(Family.SDXL, [sdxl.tokenizer], [sdxl.text_encoder], "a")
    with pytest.raises(InvalidRequest, match="Unknown emphasis mode"):
        _ours(sd1, Family.SD1, "a", emphasis="Strong")


@pytest.mark.slow
def test_full_size_sd1_equals_diffusers(tokenizers):
    tok = tokenizers[0]
    te = _diffusers_clip_skip_shim(_encoder("sd15", "text_encoder", tok, width=768, reduced=False))
    pipe = StableDiffusionPipeline(
        vae=None, text_encoder=te, tokenizer=tok, unet=None, scheduler=None, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    for clip_skip in (1, 2):
        ref, _ = pipe.encode_prompt("a cat on the hill", "cpu", 1, False, clip_skip=None if clip_skip == 1 else 1)
        cond = _ours(pipe, Family.SD1, "a cat on the hill", clip_skip=clip_skip)
        assert cond.prompt_embeds.shape == (1, 77, 768) and torch.equal(cond.prompt_embeds, ref)
