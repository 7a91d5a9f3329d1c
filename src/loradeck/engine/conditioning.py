"""Prompt text → the embeddings a diffusers pipeline takes, the way A1111 computes them.

A prompt of any length is split into 75-token chunks (``loradeck.prompt.chunks``); each chunk is encoded on its own
and the results are concatenated along the sequence, so nothing is truncated. Per family:

- SD1 (CLIP-L): last hidden state; clip skip n > 1 takes hidden state ``-n`` and applies ``final_layer_norm``.
- SD2 (OpenCLIP-H): our converted encoder already ends at OpenCLIP's penultimate block (23 layers), so its last
  hidden state is what SD2 was trained on; clip skip counts from there, as for SD1 (A1111 ignores clip skip on SD2).
- SDXL: TE1 and TE2 penultimate hidden states, no final norm, concatenated to 2048 features; the pooled vector is
  TE2's ``text_embeds`` of the first chunk. Clip skip 1 and 2 both mean penultimate; 3 and up go further (Forge's
  rule; A1111 ignores clip skip on SDXL, and Pony users' "Clip skip: 2" therefore changes nothing). An empty
  negative prompt encodes to zeros, as in A1111 and diffusers.

Emphasis "Original" scales each token's vector by its weight and then restores the chunk's original mean, per prompt
(A1111 takes the mean over the whole batch; per prompt keeps an image reproducible on its own). The positive and
negative prompts are padded to the same number of chunks with empty-prompt chunks (A1111's ``pad_cond_uncond``).
Prompts must already have their ``<lora:…>`` tags removed (``loradeck.prompt.tags.parse_prompt(...).text``).

Textual-inversion embeddings (``embeddings``: name → ``Embedding`` of the model's family) are found in the prompt as
A1111 finds them (``loradeck.prompt.chunks``); their vectors replace the token embeddings at their places, for the
forward pass of that chunk only (a hook on the encoder's token-embedding layer, removed right after): the model
itself never changes, so nothing leaks into a later request. Emphasis weighs their outputs like any token's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from loradeck.errors import InvalidRequest
from loradeck.families import Family
from loradeck.formats.embeddings import Embedding
from loradeck.prompt.chunks import (
    COMMA_BACKTRACK,
    EMPHASIS_MODES,
    EmbeddingNames,
    PromptChunk,
    Vocab,
    pad_chunks,
    tokenize_prompt,
)
from loradeck.prompt.editing import text_for_step

Reader = Callable[[Any], torch.Tensor]  # text-encoder output → the hidden states to use, [chunks, 77, dim]


@dataclass
class Conditioning:
    """Text conditioning ready for a diffusers pipeline (``pipe(**cond.as_kwargs(), ...)``)."""

    prompt_embeds: torch.Tensor  # [batch, 77·chunks, dim]
    negative_prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor | None = None  # SDXL only: [batch, projection dim]
    negative_pooled_prompt_embeds: torch.Tensor | None = None

    def as_kwargs(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def repeat(self, n: int) -> dict[str, torch.Tensor]:
        """The kwargs with a batch of one repeated ``n`` times (one per image)."""
        return {k: v.repeat_interleave(n, 0) if v.shape[0] == 1 else v for k, v in self.as_kwargs().items()}


class PromptSchedules:
    """Conditioning per sampling step for prompts with A1111 prompt editing (``loradeck.prompt.editing``).

    Each distinct (positive, negative) text pair is encoded once, when a step first needs it.
    """

    def __init__(
        self,
        encode: Callable[[str, str], Conditioning],
        positive: list[tuple[int, str]],
        negative: list[tuple[int, str]],
    ):
        self._encode, self.positive, self.negative = encode, positive, negative
        self._cache: dict[tuple[str, str], Conditioning] = {}

    @property
    def changes(self) -> bool:
        return len(self.positive) > 1 or len(self.negative) > 1

    def at(self, step: int) -> Conditioning:
        key = (text_for_step(self.positive, step), text_for_step(self.negative, step))
        if key not in self._cache:
            self._cache[key] = self._encode(*key)
        return self._cache[key]


def encode_prompts(
    model: Any,
    prompt: str | Sequence[str],
    negative_prompt: str | Sequence[str] = "",
    *,
    clip_skip: int = 1,
    emphasis: str = "Original",
    comma_backtrack: int = COMMA_BACKTRACK,
    embeddings: Mapping[str, Embedding] | None = None,
) -> Conditioning:
    """Encode with a loaded model: any object with ``family``, ``tokenizer``, ``text_encoder`` (and, for SDXL,
    ``tokenizer_2``, ``text_encoder_2``) — a diffusers pipeline with a ``family`` attribute does too."""
    family = Family(getattr(model, "family", Family.SDXL if getattr(model, "text_encoder_2", None) else Family.SD1))
    tokenizers = [model.tokenizer]
    encoders = [model.text_encoder]
    if family == Family.SDXL:
        tokenizers.append(model.tokenizer_2)
        encoders.append(model.text_encoder_2)
    return encode_prompt_pair(
        family,
        tokenizers,
        encoders,
        prompt,
        negative_prompt,
        clip_skip=clip_skip,
        emphasis=emphasis,
        comma_backtrack=comma_backtrack,
        embeddings=embeddings,
    )


@torch.no_grad()
def encode_prompt_pair(
    family: Family,
    tokenizers: Sequence[Any],
    text_encoders: Sequence[torch.nn.Module],
    prompt: str | Sequence[str],
    negative_prompt: str | Sequence[str] = "",
    *,
    clip_skip: int = 1,
    emphasis: str = "Original",
    comma_backtrack: int = COMMA_BACKTRACK,
    zero_empty_negative: bool | None = None,
    embeddings: Mapping[str, Embedding] | None = None,
) -> Conditioning:
    """Embeddings of a batch of prompts and their negatives. One tokenizer/encoder for SD1/SD2, two for SDXL.

    ``zero_empty_negative`` (default: SDXL only) encodes an empty negative prompt as zeros. ``embeddings``: the
    textual-inversion embeddings the prompts may name, each with one vector table per encoder (others are ignored).
    """
    if emphasis not in EMPHASIS_MODES:
        raise InvalidRequest(f"Unknown emphasis mode '{emphasis}'; valid modes are: {', '.join(EMPHASIS_MODES)}.")
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt)
    if len(negatives) != len(prompts):
        raise InvalidRequest(f"There are {len(prompts)} prompts but {len(negatives)} negative prompts.")
    readers = _readers(family, text_encoders, clip_skip)
    if zero_empty_negative is None:
        zero_empty_negative = family == Family.SDXL

    widths = [int(e.get_input_embeddings().embedding_dim) for e in text_encoders] if embeddings else []
    usable = {  # one vector table per encoder, each as wide as its encoder's token embeddings; others never match
        n: e
        for n, e in (embeddings or {}).items()
        if [int(p.shape[1]) for p in e.parts] == widths
    }
    counts = {n: e.vectors for n, e in usable.items()}
    names = [EmbeddingNames.build(counts, tok) if usable else None for tok in tokenizers]
    texts = list(dict.fromkeys(prompts + negatives))  # each distinct text once
    chunks = {
        text: [
            tokenize_prompt(text, tok, emphasis=emphasis, comma_backtrack=comma_backtrack, embeddings=found).chunks
            for tok, found in zip(tokenizers, names, strict=True)
        ]
        for text in texts
    }
    n_chunks = max(len(c) for per_tok in chunks.values() for c in per_tok)
    encoded: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    for text in texts:
        parts, pooled = [], None
        for i, (tok, encoder, reader, text_chunks) in enumerate(
            zip(tokenizers, text_encoders, readers, chunks[text], strict=True)
        ):
            padded = pad_chunks(text_chunks, n_chunks, Vocab.of(tok))
            z, p = encode_chunks(encoder, reader, padded, emphasis, lambda name, i=i: usable[name].parts[i])
            parts.append(z)
            pooled = p if p is not None else pooled
        encoded[text] = (torch.cat(parts, dim=-1), pooled)

    def stack(batch: list[str], negative: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        zs, ps = [], []
        for text in batch:
            z, p = encoded[text]
            if negative and zero_empty_negative and text == "":
                z, p = torch.zeros_like(z), (torch.zeros_like(p) if p is not None else None)
            zs.append(z)
            ps.append(p)
        pooled = torch.cat(ps) if ps[0] is not None else None
        return torch.cat(zs), pooled

    pos, pos_pooled = stack(prompts, negative=False)
    neg, neg_pooled = stack(negatives, negative=True)
    return Conditioning(pos, neg, pos_pooled, neg_pooled)


def encode_chunks(
    encoder: torch.nn.Module,
    reader: Reader,
    chunks: list[PromptChunk],
    emphasis: str = "Original",
    vectors: Callable[[str], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """([1, 77·n, dim] embeddings, pooled ``text_embeds`` of the first chunk or None) for one prompt's chunks.

    One forward per chunk, as A1111: a batched forward gives last-bit differences on CPU, and a one-chunk prompt must
    equal diffusers' ``encode_prompt`` exactly. ``vectors(name)`` gives this encoder's vectors of an embedding the
    chunks name (their ``fixes``).
    """
    device = next(encoder.parameters()).device
    zs, pooled = [], None
    for i, chunk in enumerate(chunks):
        with _embedding_vectors(encoder, chunk.fixes, vectors):
            out = encoder(
                input_ids=torch.tensor([chunk.tokens], dtype=torch.long, device=device), output_hidden_states=True
            )
        weights = torch.tensor([chunk.weights], dtype=torch.float32, device=device)
        zs.append(apply_emphasis(reader(out), weights, emphasis))
        if i == 0 and getattr(out, "text_embeds", None) is not None:
            pooled = out.text_embeds
    return torch.cat(zs, dim=1), pooled


@contextmanager
def _embedding_vectors(encoder: torch.nn.Module, fixes: list[tuple[int, str]], vectors: Callable[[str], Any] | None):
    """While encoding one chunk: its embeddings' vectors in place of the placeholders' token embeddings (A1111's
    ``EmbeddingsWithFixes``; offset + 1 skips the BOS). A hook on this forward only: the weights never change."""
    if not fixes or vectors is None:
        yield
        return

    def replace(_module: torch.nn.Module, _args: Any, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        for offset, name in fixes:
            vec = vectors(name).to(device=output.device, dtype=output.dtype)
            output[0, offset + 1 : offset + 1 + vec.shape[0]] = vec
        return output

    layer: Any = encoder.get_input_embeddings()
    handle = layer.register_forward_hook(replace)
    try:
        yield
    finally:
        handle.remove()


def apply_emphasis(z: torch.Tensor, weights: torch.Tensor, mode: str = "Original") -> torch.Tensor:
    """Scale each token vector of ``z`` [chunks, 77, dim] by its weight; "Original" then restores each chunk's mean.

    Computed in float32, returned in ``z``'s dtype. All-ones weights return ``z`` unchanged.
    """
    if mode in ("Ignore", "None") or bool((weights == 1).all()):
        return z
    zf = z.float()
    scaled = zf * weights.unsqueeze(-1)
    if mode == "Original":
        original_mean = zf.mean(dim=(1, 2), keepdim=True)
        scaled = scaled * (original_mean / scaled.mean(dim=(1, 2), keepdim=True))
    return scaled.to(z.dtype)


# ------------------------------------------------------------------------------------------------ layer choice
def _readers(family: Family, encoders: Sequence[torch.nn.Module], clip_skip: int) -> list[Reader]:
    if clip_skip < 1:
        raise InvalidRequest(f"Clip skip must be 1 or more, not {clip_skip}.")
    if family in (Family.SD1, Family.SD2, Family.DEMO):
        if len(encoders) != 1:
            raise InvalidRequest(f"A {family.label} model has one text encoder, not {len(encoders)}.")
        return [_final_layer_reader(encoders[0], clip_skip)]
    if family == Family.SDXL:
        if len(encoders) != 2:
            raise InvalidRequest(f"An SDXL model has two text encoders, not {len(encoders)}.")
        return [_hidden_reader(e, max(clip_skip, 2), clip_skip) for e in encoders]
    raise InvalidRequest(f"Cannot encode prompts for a model of family {family.label}.")


def _layers(encoder: torch.nn.Module) -> int:
    return int(encoder.config.num_hidden_layers)


def _final_layer_reader(encoder: torch.nn.Module, clip_skip: int) -> Reader:
    if clip_skip == 1:
        return lambda out: out.last_hidden_state
    if clip_skip > _layers(encoder):
        raise InvalidRequest(f"Clip skip {clip_skip} is more than the text encoder's {_layers(encoder)} layers.")
    norm = _final_layer_norm(encoder)
    return lambda out: norm(out.hidden_states[-clip_skip])


def _hidden_reader(encoder: torch.nn.Module, index_from_end: int, clip_skip: int) -> Reader:
    if index_from_end > _layers(encoder):
        raise InvalidRequest(f"Clip skip {clip_skip} is more than the text encoder's {_layers(encoder)} layers.")
    return lambda out: out.hidden_states[-index_from_end]


def _final_layer_norm(encoder: torch.nn.Module) -> torch.nn.Module:
    """transformers 5's CLIPTextModel holds ``final_layer_norm`` itself; older ones and the projection model nest it."""
    norm = getattr(encoder, "final_layer_norm", None)
    if norm is None:
        norm = encoder.text_model.final_layer_norm
    return norm
