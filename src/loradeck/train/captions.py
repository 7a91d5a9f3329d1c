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


def process_caption(
    caption: str,
    rng: random.Random,
    *,
    shuffle: bool,
    keep_tokens: int,
    trigger: str = "",
    tag_dropout: float = 0.0,
) -> str:
    """kohya ``process_caption`` (shuffle, keep_tokens, tag dropout) with the trigger tags always kept in front.

    The trigger is pulled out of the shuffle so a user who forgot ``--keep-tokens 1`` still gets it first. As in
    kohya, tag dropout only drops tags after the kept ones, after shuffling. (Whole-caption dropout is the
    dataset's: it needs the epoch.)
    """
    caption = with_trigger(caption, trigger)
    if not shuffle and tag_dropout <= 0:
        return caption
    tags = split_tags(caption)
    fixed_words = {t.lower() for t in split_tags(trigger)}
    front = [t for t in tags if t.lower() in fixed_words]
    rest = [t for t in tags if t.lower() not in fixed_words]
    kept, pool = rest[:keep_tokens], rest[keep_tokens:]
    if shuffle:
        rng.shuffle(pool)
    if tag_dropout > 0:
        pool = [t for t in pool if rng.random() >= tag_dropout]
    return ", ".join(front + kept + pool)


def drops_caption(rng: random.Random, epoch: int, rate: float, every_n_epochs: int) -> bool:
    """kohya's whole-caption dropout: with probability ``rate``, or in every Nth epoch (epochs counted from 1)."""
    if rate > 0 and rng.random() < rate:
        return True
    return every_n_epochs > 0 and epoch % every_n_epochs == 0
