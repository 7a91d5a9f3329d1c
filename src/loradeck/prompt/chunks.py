"""Weighted fragments → CLIP token chunks of 75 (+BOS/EOS = 77), as A1111's CLIP hijack builds them.

Nothing is truncated: a prompt of any length becomes as many chunks as it needs. ``BREAK`` closes the current chunk;
when a chunk overflows and its last comma is at most ``comma_backtrack`` tokens from the end, the text after that
comma moves to the next chunk. After the EOS, a chunk is filled with the tokenizer's pad token: EOS for CLIP-L
(SD1, SDXL TE1), "!" (id 0) for OpenCLIP (SD2, SDXL TE2) — read from the tokenizer, never assumed.

Textual-inversion embeddings (``EmbeddingNames``) are found as A1111 finds them: by the token ids of their name inside
one fragment's tokens, longest name first. An embedding of n vectors takes n places in the chunk (placeholder id 0,
the fragment's weight), starts a new chunk when it does not fit in this one, and is recorded as a ``fix`` (offset,
name) whose vectors the encoder puts in place of the placeholders' token embeddings. One deliberate difference: when
the comma backtrack moves the end of a full chunk on, the fixes in it move along (A1111 leaves them behind, writing
the vectors over the old chunk's padding).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from loradeck.prompt.emphasis import Fragment, parse_prompt_attention

CHUNK_LENGTH = 75  # text tokens per chunk; BOS and EOS make it 77
COMMA_BACKTRACK = 20  # A1111's comma_padding_backtrack default
EMPHASIS_MODES = ("Original", "No norm", "Ignore", "None")
PLACEHOLDER = 0  # the id an embedding's places hold (A1111's); its vectors replace the token embeddings there


@dataclass
class PromptChunk:
    tokens: list[int] = field(default_factory=list)  # 77 ids once closed: BOS, text, EOS, padding
    weights: list[float] = field(default_factory=list)  # one per token; 1.0 for BOS/EOS/padding
    fixes: list[tuple[int, str]] = field(default_factory=list)  # (offset among the text tokens, embedding name)


@dataclass
class TokenizedPrompt:
    chunks: list[PromptChunk]
    token_count: int  # text tokens, as A1111's "n/75" counter shows (a BREAK counts its chunk as full)

    @property
    def embeddings(self) -> list[str]:
        """Names of the embeddings used, in order of first use."""
        return list(dict.fromkeys(name for c in self.chunks for _, name in c.fixes))


@dataclass(frozen=True)
class EmbeddingNames:
    """A1111's ``ids_lookup``: embedding names by the first token id of their name → [(name ids, name, vectors)],
    longest name first."""

    by_first: Mapping[int, tuple[tuple[tuple[int, ...], str, int], ...]]

    @classmethod
    def build(cls, vectors: Mapping[str, int], tokenizer: Any) -> EmbeddingNames:
        """From {name: vector count}; a name is tokenized as A1111 does it (no BOS/EOS, no truncation)."""
        names = list(vectors)
        ids = tokenizer(names, truncation=False, add_special_tokens=False, verbose=False)["input_ids"] if names else []
        table: dict[int, list[tuple[tuple[int, ...], str, int]]] = {}
        for name, name_ids in zip(names, ids, strict=True):
            if name_ids:
                table.setdefault(name_ids[0], []).append((tuple(name_ids), name, int(vectors[name])))
        return cls({k: tuple(sorted(v, key=lambda e: len(e[0]), reverse=True)) for k, v in table.items()})

    def at(self, tokens: Sequence[int], offset: int) -> tuple[str, int, int] | None:
        """(name, name's token count, vectors) of the embedding named at ``tokens[offset]``, or None."""
        for ids, name, vectors in self.by_first.get(tokens[offset], ()):
            if tuple(tokens[offset : offset + len(ids)]) == ids:
                return name, len(ids), vectors
        return None

    def occurrences(self, token_lists: Iterable[Sequence[int]]) -> list[str]:
        """Names found anywhere in these token lists (each a fragment's tokens), in order of first occurrence."""
        found: dict[str, None] = {}
        for tokens in token_lists:
            i = 0
            while i < len(tokens):
                hit = self.at(tokens, i)
                if hit is None:
                    i += 1
                    continue
                found.setdefault(hit[0])
                i += hit[1]
        return list(found)


@dataclass(frozen=True)
class Vocab:
    """The ids chunking needs from a tokenizer."""

    bos: int
    eos: int
    pad: int
    comma: int | None

    @classmethod
    def of(cls, tokenizer: Any) -> Vocab:
        bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        comma = tokenizer.convert_tokens_to_ids(",</w>")
        if comma is None or tokenizer.convert_ids_to_tokens(comma) != ",</w>":  # missing → the unk id comes back
            comma = None
        return cls(bos=bos, eos=eos, pad=pad, comma=comma)


def fragments_for(text: str, emphasis: str = "Original") -> list[Fragment]:
    """The weighted fragments of a prompt; with emphasis "None" brackets and BREAK are plain text (A1111)."""
    if emphasis not in EMPHASIS_MODES:
        raise ValueError(f"unknown emphasis mode {emphasis!r}; expected one of {EMPHASIS_MODES}")
    return [Fragment(text, 1.0)] if emphasis == "None" else parse_prompt_attention(text)


def tokenize_fragments(fragments: list[Fragment], tokenizer: Any) -> list[list[int]]:
    """Token ids of each fragment on its own, without BOS/EOS (A1111 tokenizes fragments separately)."""
    texts = [f.text for f in fragments]
    return tokenizer(texts, truncation=False, add_special_tokens=False, verbose=False)["input_ids"]


def chunk_tokens(
    fragments: list[Fragment],
    token_ids: list[list[int]],
    vocab: Vocab,
    *,
    comma_backtrack: int = COMMA_BACKTRACK,
    embeddings: EmbeddingNames | None = None,
) -> TokenizedPrompt:
    """Lay fragment tokens into 75-token chunks (the core of A1111's ``tokenize_line``)."""
    chunks: list[PromptChunk] = []
    chunk = PromptChunk()
    token_count = 0
    last_comma = -1

    def close(is_last: bool = False) -> None:
        nonlocal chunk, token_count, last_comma
        token_count += len(chunk.tokens) if is_last else CHUNK_LENGTH
        n_text = len(chunk.tokens)
        chunk.tokens = [vocab.bos, *chunk.tokens, vocab.eos] + [vocab.pad] * (CHUNK_LENGTH - n_text)
        chunk.weights = [1.0, *chunk.weights, 1.0] + [1.0] * (CHUNK_LENGTH - n_text)
        chunks.append(chunk)
        chunk = PromptChunk()
        last_comma = -1

    for fragment, ids in zip(fragments, token_ids, strict=True):
        if fragment.is_break:
            close()
            continue
        position = 0
        while position < len(ids):
            token = ids[position]
            if token == vocab.comma:
                last_comma = len(chunk.tokens)
            elif (
                comma_backtrack
                and len(chunk.tokens) == CHUNK_LENGTH
                and last_comma != -1
                and len(chunk.tokens) - last_comma <= comma_backtrack
            ):
                # Full chunk, a comma near its end: what follows the comma moves on to the next chunk.
                cut = last_comma + 1
                moved_tokens, moved_weights = chunk.tokens[cut:], chunk.weights[cut:]
                moved_fixes = [(at - cut, name) for at, name in chunk.fixes if at >= cut]
                del chunk.tokens[cut:], chunk.weights[cut:]
                chunk.fixes = [f for f in chunk.fixes if f[0] < cut]
                close()
                chunk.tokens, chunk.weights, chunk.fixes = moved_tokens, moved_weights, moved_fixes
            if len(chunk.tokens) == CHUNK_LENGTH:
                close()
            found = embeddings.at(ids, position) if embeddings is not None else None
            if found is None:
                chunk.tokens.append(token)
                chunk.weights.append(fragment.weight)
                position += 1
                continue
            name, name_length, vectors = found
            if len(chunk.tokens) + vectors > CHUNK_LENGTH:  # an embedding is never split between chunks
                close()
            chunk.fixes.append((len(chunk.tokens), name))
            chunk.tokens += [PLACEHOLDER] * vectors
            chunk.weights += [fragment.weight] * vectors
            position += name_length
    if chunk.tokens or not chunks:
        close(is_last=True)
    return TokenizedPrompt(chunks, token_count)


def tokenize_prompt(
    text: str,
    tokenizer: Any,
    *,
    emphasis: str = "Original",
    comma_backtrack: int = COMMA_BACKTRACK,
    embeddings: EmbeddingNames | None = None,
) -> TokenizedPrompt:
    """Chunks (77 ids and 77 weights each) for a prompt whose extra-network tags are already removed."""
    fragments = fragments_for(text, emphasis)
    ids = tokenize_fragments(fragments, tokenizer)
    return chunk_tokens(fragments, ids, Vocab.of(tokenizer), comma_backtrack=comma_backtrack, embeddings=embeddings)


def empty_chunk(vocab: Vocab) -> PromptChunk:
    """The chunk of an empty prompt (BOS, EOS, padding), used to pad a shorter prompt to a longer one."""
    tokens = [vocab.bos, vocab.eos] + [vocab.pad] * CHUNK_LENGTH
    return PromptChunk(tokens, [1.0] * len(tokens))


def pad_chunks(chunks: list[PromptChunk], count: int, vocab: Vocab) -> list[PromptChunk]:
    """``chunks`` followed by empty chunks up to ``count`` (A1111's ``pad_cond_uncond``)."""
    return list(chunks) + [empty_chunk(vocab) for _ in range(count - len(chunks))]
