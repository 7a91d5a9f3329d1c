"""Caption handling per step: trigger words first, optional shuffle of the comma tags after the kept ones."""

from __future__ import annotations

import random
import re


def split_tags(caption: str, separator: str = ",") -> list[str]:
    return [t.strip() for t in caption.split(separator) if t.strip()]


def has_trigger(caption: str, trigger: str) -> bool:
    """Whether every trigger tag already appears among the caption's tags (case-insensitive)."""
    return all(re.search(rf"(?<!\w){re.escape(t)}(?!\w)", caption, re.IGNORECASE) for t in split_tags(trigger))


def with_trigger(caption: str, trigger: str) -> str:
    """``trigger, caption`` unless the caption already holds the trigger."""
    if not trigger.strip() or has_trigger(caption, trigger):
        return caption
    return f"{trigger.strip()}, {caption}" if caption else trigger.strip()


def process_caption(caption: str, rng: random.Random, *, shuffle: bool, keep_tokens: int, trigger: str = "") -> str:
    """kohya ``process_caption`` (shuffle + keep_tokens) with the trigger tags always kept in front.

    The trigger is pulled out of the shuffle so a user who forgot ``--keep-tokens 1`` still gets it first.
    """
    caption = with_trigger(caption, trigger)
    if not shuffle:
        return caption
    tags = split_tags(caption)
    fixed_words = {t.lower() for t in split_tags(trigger)}
    front = [t for t in tags if t.lower() in fixed_words]
    rest = [t for t in tags if t.lower() not in fixed_words]
    kept, pool = rest[:keep_tokens], rest[keep_tokens:]
    rng.shuffle(pool)
    return ", ".join(front + kept + pool)
