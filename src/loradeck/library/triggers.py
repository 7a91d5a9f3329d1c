"""Trigger words: which words wake a LoRA up, and whether a prompt contains them.

Priority (first source that gives any word wins): the user's ``activation text`` (name.json), Civitai's
``trainedWords`` (name.civitai.info), ``modelspec.trigger_phrase``, then the most frequent tags of
``ss_tag_frequency`` — a guess, since the class token of a kohya dataset is in every caption.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

TAG_FREQUENCY_TOP = 3
_SPLIT = re.compile(r"\s*(?:\|\||,|\n)\s*")  # ", " lists, zixaphir's " || " and one word per line
_NETWORK_TAG = re.compile(r"<\w+:[^>]+>")  # <lora:name:1> etc. must not count as the word "name"


def split_words(text: str) -> list[str]:
    """``"a, b || c"`` → ``["a", "b", "c"]``; empties dropped, duplicates (case-insensitive) dropped."""
    return _dedupe(w.strip() for w in _SPLIT.split(_NETWORK_TAG.sub(" ", text or "")))


def _dedupe(words: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for w in words:
        if w and w.lower() not in seen:
            seen.add(w.lower())
            out.append(w)
    return out


def top_tags(tag_frequency: Any, n: int = TAG_FREQUENCY_TOP) -> list[str]:
    """The ``n`` most frequent tags of a decoded ``ss_tag_frequency`` ({dir: {tag: count}}), summed over dirs;
    ties keep the order the tags first appear in."""
    if not isinstance(tag_frequency, Mapping):
        return []
    counts: Counter[str] = Counter()
    for tags in tag_frequency.values():
        if isinstance(tags, Mapping):
            for tag, count in tags.items():
                if isinstance(count, int | float) and str(tag).strip():
                    counts[str(tag).strip()] += count
    ranked = sorted(enumerate(counts.items()), key=lambda it: (-it[1][1], it[0]))
    return [tag for _, (tag, _) in ranked[:n]]


def choose_trigger_words(
    activation_text: str | None,
    trained_words: Sequence[str] | None,
    metadata: Mapping[str, Any],
) -> tuple[list[str], str | None]:
    """(words, source) with source one of ``activation_text``, ``civitai``, ``modelspec``, ``tag_frequency``."""
    if words := split_words(activation_text or ""):
        return words, "activation_text"
    if words := _dedupe(w for phrase in trained_words or () for w in split_words(phrase)):
        return words, "civitai"
    phrase = metadata.get("modelspec.trigger_phrase")
    if isinstance(phrase, str) and (words := split_words(phrase)):
        return words, "modelspec"
    if words := top_tags(metadata.get("ss_tag_frequency")):
        return words, "tag_frequency"
    return [], None


# ---------------------------------------------------------------- checking a prompt


class HasTriggers(Protocol):
    name: str
    trigger_words: list[str]


def _normalise(text: str) -> str:
    # kohya tags use "_" where prompts use " "; emphasis brackets and weights are not part of words.
    return re.sub(r"\s+", " ", text.replace("_", " ")).lower()


def contains_word(prompt: str, word: str) -> bool:
    """Case-insensitive, whole-word(ish) match: ``cat`` is in ``(cat:1.2)`` but not in ``category``."""
    w = _normalise(word).strip()
    if not w:
        return False
    pattern = rf"(?<!\w){re.escape(w)}(?!\w)"
    return re.search(pattern, _normalise(_NETWORK_TAG.sub(" ", prompt))) is not None


def missing_trigger_words(prompt: str, entries: Iterable[HasTriggers]) -> list[tuple[HasTriggers, list[str]]]:
    """Active entries with trigger words of which NONE appears in ``prompt``, each with its words.

    ``<lora:…>`` tags are ignored, so naming the LoRA in its tag does not count as using its trigger word.
    Entries with no known trigger words are never reported.
    """
    out = []
    for entry in entries:
        words = list(entry.trigger_words)
        if words and not any(contains_word(prompt, w) for w in words):
            out.append((entry, words))
    return out


def add_trigger_words(prompt: str, entries: Iterable[HasTriggers]) -> str:
    """``prompt`` with the trigger words of every entry in :func:`missing_trigger_words` appended (", "-joined)."""
    extra = _dedupe(w for _, words in missing_trigger_words(prompt, entries) for w in words)
    if not extra:
        return prompt
    stripped = prompt.rstrip()
    sep = "" if not stripped else (" " if stripped.endswith(",") else ", ")
    return stripped + sep + ", ".join(extra)


def trigger_warning(entry: HasTriggers, words: Sequence[str]) -> str:
    """One sentence for the user, e.g. from ``loradeck generate``."""
    return f"LoRA {entry.name} is active but none of its trigger words is in the prompt: {', '.join(words)}."
