"""The "weights at a glance" panel: the LoRAs active in a prompt, a weight each, their sum, normalising to 1.

Pure string work over ``loradeck.prompt.tags``; the sliders in the page are a fixed set of slots filled from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from loradeck.errors import LoradeckError
from loradeck.prompt.tags import format_weight, normalize_weights, parse_prompt, rewrite_tag_weight, rewrite_tag_weights

MAX_SLOTS = 8  # sliders in the panel; a longer stack lists the rest by name


@dataclass(frozen=True)
class ActiveLora:
    name: str
    weight: float  # the U-Net multiplier: what a card or a tutorial calls the weight
    te: float
    count: int = 1  # how many tags of this name the prompt has (each is applied)
    lbw: str | None = None  # block weights of its first tag (``lbw=`` preset or vector), shown beside the slider


@dataclass(frozen=True)
class PromptLoras:
    loras: tuple[ActiveLora, ...] = ()
    error: str | None = None  # a tag that does not parse (e.g. while it is being typed)

    @property
    def total(self) -> float:
        """Sum of the absolute weights: what "normalise to 1" brings to 1."""
        return sum(abs(lo.weight) * lo.count for lo in self.loras)

    def summary(self) -> str:
        if self.error:
            return self.error
        if not self.loras:
            return "No LoRA in the prompt yet: click a card below to add one."
        label = "Sum of |weights|" if any(lo.weight < 0 for lo in self.loras) else "Sum of weights"
        return f"{label}: {format_weight(round(self.total, 4))}"


def prompt_loras(prompt: str) -> PromptLoras:
    """The LoRAs of ``prompt`` in order of first appearance, one entry per name."""
    try:
        tags = parse_prompt(prompt or "").loras
    except LoradeckError as exc:
        return PromptLoras(error=str(exc))
    seen: dict[str, ActiveLora] = {}
    for tag in tags:
        if tag.name in seen:
            first = seen[tag.name]
            seen[tag.name] = ActiveLora(first.name, first.weight, first.te, first.count + 1, first.lbw)
        else:
            seen[tag.name] = ActiveLora(tag.name, tag.unet, tag.te, lbw=tag.lbw)
    return PromptLoras(tuple(seen.values()))


def set_weight(prompt: str, name: str, weight: float) -> str:
    """``prompt`` with the weight of LoRA ``name`` set to ``weight``. A tag with one weight keeps one; a tag with
    separate text-encoder and U-Net weights keeps its text-encoder weight and gets the new U-Net weight."""
    current = next((lo for lo in prompt_loras(prompt).loras if lo.name == name), None)
    if current is None:
        return prompt
    weight = round(float(weight), 4)
    if current.te == current.weight:
        return rewrite_tag_weight(prompt, name, weight)
    return rewrite_tag_weight(prompt, name, current.te, weight)


def normalise(prompt: str) -> str:
    """``prompt`` with its LoRA weights scaled so that their absolute values sum to 1 (te scaled alike)."""
    tags = parse_prompt(prompt or "").loras
    return rewrite_tag_weights(prompt, normalize_weights(tags)) if tags else prompt
