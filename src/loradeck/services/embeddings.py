"""The textual-inversion embeddings one generation may use, the ones its prompts do use, and what it records.

As in A1111: the embeddings folder's files of the model's family are loaded; the embeddings bundled in a LoRA of the
job's stack join them unless the folder already has one of that name; the rest (another family: an SD 1.x embedding
under an SDXL model) is "skipped" — its name is read as plain words — and a prompt that names one gets one warning
per embedding in the result (the channel the LoRA coverage lines use). ``TI hashes`` lists the used embeddings that
come from a file, positive prompt first, each once (A1111 writes the positive prompt's, then the negative's).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from loradeck.families import Family
from loradeck.formats.embeddings import Embedding
from loradeck.library.embeddings import EmbeddingEntry
from loradeck.prompt.chunks import EmbeddingNames, fragments_for, tokenize_fragments, tokenize_prompt
from loradeck.prompt.infotext import format_lora_hashes


@dataclass(frozen=True)
class JobEmbeddings:
    loaded: dict[str, Embedding] = field(default_factory=dict)  # what the encoder may put in place of a name
    used: tuple[str, ...] = ()  # names the prompts use, positive first
    hashes: dict[str, str] = field(default_factory=dict)  # used file embeddings → 12 hex of the file's sha256
    warnings: tuple[str, ...] = ()

    @property
    def ti_hashes(self) -> str:
        """A1111's ``TI hashes`` value (``name: hash12, …``), or ""."""
        return format_lora_hashes(self.hashes)


def job_embeddings(
    family: Family,
    tokenizer: Any,
    positive: Iterable[str],
    negative: Iterable[str],
    folder: Sequence[EmbeddingEntry],
    bundled_in: Sequence[Any] = (),
    emphasis: str = "Original",
) -> JobEmbeddings:
    """For a model of ``family`` whose (first) tokenizer is ``tokenizer``: the prompt texts (every text of the prompt
    editing schedules), the folder's entries and the LoRA files of the stack (``LoraFile.embeddings``)."""
    loaded: dict[str, Embedding] = {}
    hashes_of: dict[str, str] = {}
    skipped: dict[str, Embedding] = {}
    fits = family is not Family.UNKNOWN
    for entry in folder:
        if fits and entry.family is family:
            loaded[entry.name] = entry.embedding
            hashes_of[entry.name] = entry.short_hash
        else:
            skipped.setdefault(entry.name, entry.embedding)
    for lora in bundled_in:
        for name, embedding in getattr(lora, "embeddings", {}).items():
            if name in loaded:
                continue  # A1111: "Skip bundle embedding … already loaded from embeddings folder"
            if fits and embedding.family is family:
                loaded[name] = embedding
            else:
                skipped.setdefault(name, embedding)
    skipped = {n: e for n, e in skipped.items() if n not in loaded}
    texts = list(dict.fromkeys([*positive, *negative]))
    if not texts or not (loaded or skipped):
        return JobEmbeddings(loaded=loaded)
    names = EmbeddingNames.build({n: e.vectors for n, e in loaded.items()}, tokenizer)
    used: dict[str, None] = {}
    for text in texts:
        for name in tokenize_prompt(text, tokenizer, emphasis=emphasis, embeddings=names).embeddings:
            used.setdefault(name)
    warnings = []
    if skipped:
        other = EmbeddingNames.build({n: e.vectors for n, e in skipped.items()}, tokenizer)
        token_lists = []
        for text in texts:
            fragments = [f for f in fragments_for(text, emphasis) if not f.is_break]
            token_lists += tokenize_fragments(fragments, tokenizer) if fragments else []
        warnings = [_skipped(name, skipped[name], family) for name in other.occurrences(token_lists)]
    hashes = {n: hashes_of[n] for n in used if n in hashes_of}
    return JobEmbeddings(loaded, tuple(used), hashes, tuple(warnings))


def _skipped(name: str, embedding: Embedding, family: Family) -> str:
    if embedding.family is Family.UNKNOWN:
        why = f"has vectors {embedding.shape} wide, which no {family.label} text encoder takes"
    else:
        why = f"is for {embedding.family.label} but the model is {family.label}"
    return f"Embedding {name} {why}; it was skipped (its name is read as plain words)."


def a1111_listing(entries: Sequence[EmbeddingEntry], family: Family) -> dict[str, dict[str, Any]]:
    """A1111's ``/sdapi/v1/embeddings``: ``loaded`` = the entries of the model's family, ``skipped`` = the others,
    each ``{name: {step, sd_checkpoint, sd_checkpoint_name, shape, vectors}}``."""
    out: dict[str, dict[str, Any]] = {"loaded": {}, "skipped": {}}
    for entry in entries:
        fits = entry.family is family and family is not Family.UNKNOWN
        out["loaded" if fits else "skipped"][entry.name] = entry.embedding.a1111()
    return out


def hash_notes(entries: Sequence[EmbeddingEntry], hashes: dict[str, str]) -> list[str]:
    """For an infotext's ``TI hashes`` (name → hash): one sentence per embedding that is missing here or whose file
    differs (another hash), so a re-render says why it may not draw the same picture."""
    have = {e.name: e for e in entries}
    notes = []
    for name, short in hashes.items():
        entry = have.get(name)
        short = short.strip().lower()
        if entry is None:
            other = next((e for e in entries if len(short) >= 8 and e.sha256.startswith(short)), None)
            hint = f"; {other.path.name} has its hash" if other else ""
            notes.append(f"The picture's embedding {name} ({short}) is not in the embeddings folder{hint}.")
        elif short and not entry.sha256.startswith(short):
            notes.append(
                f"The embedding {name} here ({entry.short_hash}) is not the picture's ({short}): the re-render may differ."
            )
    return notes
