"""Textual-inversion embeddings in prompt encoding: against diffusers' ``load_textual_inversion`` + ``encode_prompt``,
against the emphasis formula, and A1111's placement in 75-token chunks. Random-weight reduced text encoders."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

from loradeck.engine.conditioning import apply_emphasis, encode_prompts
from loradeck.families import Family
from loradeck.formats.embeddings import Embedding
from loradeck.prompt.chunks import PLACEHOLDER, EmbeddingNames, tokenize_prompt
from tests.engine.test_conditioning import _diffusers_clip_skip_shim, _encoder
from tests.prompt.tokenizers import clip_tokenizer


def _vectors(n: int, width: int, seed: int) -> torch.Tensor:
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed)) * 0.5


@pytest.fixture(scope="module")
def tokenizer_dirs(tmp_path_factory):
    return tmp_path_factory.mktemp("tok_l"), tmp_path_factory.mktemp("tok_g")


def _sd1_pipe(dirs):
    tok = clip_tokenizer(dirs[0])
    te = _diffusers_clip_skip_shim(_encoder("sd15", "text_encoder", tok, width=32))
    return StableDiffusionPipeline(
        vae=None, text_encoder=te, tokenizer=tok, unet=None, scheduler=None, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip


def _sdxl_pipe(dirs):
    tok_l, tok_g = clip_tokenizer(dirs[0]), clip_tokenizer(dirs[1], pad_token="!")
    te1 = _encoder("sdxl", "text_encoder", tok_l, width=32, seed=1)
    te2 = _encoder("sdxl", "text_encoder_2", tok_g, width=64, seed=2)
    return StableDiffusionXLPipeline(
        vae=None, text_encoder=te1, text_encoder_2=te2, tokenizer=tok_l, tokenizer_2=tok_g, unet=None, scheduler=None
    )


def _ours(pipe, family, prompt, negative="", embeddings=None, **kw):
    return encode_prompts(
        SimpleNamespace(family=family, **pipe.components), prompt, negative, embeddings=embeddings, **kw
    )


def test_sd1_equals_diffusers_load_textual_inversion(tokenizer_dirs):
    ours_pipe, ref = _sd1_pipe(tokenizer_dirs), _sd1_pipe(tokenizer_dirs)
    one, three = _vectors(1, 32, 1), _vectors(3, 32, 2)
    ref.load_textual_inversion({"zzq": one[0]}, token="zzq")  # diffusers' own format: {token: [width]}
    ref.load_textual_inversion({"string_to_param": {"*": three}, "name": "qvx"})  # A1111's .pt layout
    embeddings = {
        "zzq": Embedding("zzq", (one,), Family.SD1),
        "qvx": Embedding("qvx", (three,), Family.SD1),
    }
    before = {k: v.clone() for k, v in ours_pipe.text_encoder.state_dict().items()}
    prompt, negative = "a cat zzq on the hill", "qvx, dog"
    cond = _ours(ours_pipe, Family.SD1, prompt, negative, embeddings)
    want_pos, want_neg = ref.encode_prompt(prompt, "cpu", 1, True, negative)
    assert torch.equal(cond.prompt_embeds, want_pos)
    assert torch.equal(cond.negative_prompt_embeds, want_neg)
    plain = _ours(ours_pipe, Family.SD1, prompt, negative)
    assert (plain.prompt_embeds - cond.prompt_embeds).abs().max() > 1e-3  # the embedding did something
    # nothing stays behind in the model: the weights are the same and a plain encode equals a fresh model's
    after = ours_pipe.text_encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    fresh = _ours(_sd1_pipe(tokenizer_dirs), Family.SD1, prompt, negative)
    assert torch.equal(plain.prompt_embeds, fresh.prompt_embeds)


def test_sdxl_clip_l_and_clip_g_equal_diffusers(tokenizer_dirs):
    ours_pipe, ref = _sdxl_pipe(tokenizer_dirs), _sdxl_pipe(tokenizer_dirs)
    clip_l, clip_g = _vectors(2, 32, 3), _vectors(2, 64, 4)
    ref.load_textual_inversion(clip_l, token="zzq", text_encoder=ref.text_encoder, tokenizer=ref.tokenizer)
    ref.load_textual_inversion(clip_g, token="zzq", text_encoder=ref.text_encoder_2, tokenizer=ref.tokenizer_2)
    embeddings = {"zzq": Embedding("zzq", (clip_l, clip_g), Family.SDXL)}
    cond = _ours(ours_pipe, Family.SDXL, "zzq sky", "dog zzq", embeddings)
    pos, neg, pooled, neg_pooled = ref.encode_prompt("zzq sky", negative_prompt="dog zzq", device="cpu")
    assert torch.equal(cond.prompt_embeds, pos) and torch.equal(cond.negative_prompt_embeds, neg)
    assert torch.equal(cond.pooled_prompt_embeds, pooled)
    assert torch.equal(cond.negative_pooled_prompt_embeds, neg_pooled)


def test_emphasis_weighs_the_embedding_vectors_like_tokens(tokenizer_dirs):
    pipe = _sd1_pipe(tokenizer_dirs)
    embeddings = {"zzq": Embedding("zzq", (_vectors(2, 32, 5),), Family.SD1)}
    plain = _ours(pipe, Family.SD1, "a cat zzq", embeddings=embeddings).prompt_embeds
    for mode in ("Original", "No norm"):
        weighted = _ours(pipe, Family.SD1, "a cat (zzq:1.3)", embeddings=embeddings, emphasis=mode).prompt_embeds
        chunk = tokenize_prompt(
            "a cat zzq", pipe.tokenizer, embeddings=EmbeddingNames.build({"zzq": 2}, pipe.tokenizer)
        )
        ((offset, name),) = chunk.chunks[0].fixes
        weights = torch.ones(1, 77)
        weights[0, offset + 1 : offset + 3] = 1.3  # the embedding's two places, after the BOS
        torch.testing.assert_close(weighted, apply_emphasis(plain, weights, mode), rtol=0, atol=1e-6)
        assert (weighted - plain).abs().max() > 1e-3


def test_multi_vector_embeddings_take_their_places_in_the_chunks(tokenizer_dirs):
    tok = clip_tokenizer(tokenizer_dirs[0])
    names = EmbeddingNames.build({"zzq": 10, "zz": 1}, tok)
    prompt = "cat " * 70 + "zzq dog"  # 70 tokens, then 10 vectors do not fit: a new chunk starts
    chunks = tokenize_prompt(prompt, tok, embeddings=names, comma_backtrack=0)
    assert len(chunks.chunks) == 2
    first, second = chunks.chunks
    assert first.tokens[1:71] == [tok.convert_tokens_to_ids("cat</w>")] * 70 and first.fixes == []
    assert second.fixes == [(0, "zzq")] and second.tokens[1:11] == [PLACEHOLDER] * 10
    assert second.tokens[11] == tok.convert_tokens_to_ids("dog</w>")
    assert chunks.token_count == 75 + 11 and chunks.embeddings == ["zzq"]
    # the longest name wins; a shorter one matches where the longer does not
    hits = tokenize_prompt("zzq zz", tok, embeddings=names).chunks[0].fixes
    assert hits == [(0, "zzq"), (10, "zz")]
    # after a comma near a full chunk's end, the text that moves on takes its embedding with it
    moving = tokenize_prompt("cat " * 60 + ", dog zz " + "sky " * 14, tok, embeddings=names)
    assert moving.chunks[0].fixes == [] and moving.chunks[1].fixes == [(1, "zz")]
