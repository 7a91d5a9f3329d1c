"""The affinity key of a generation: which LoRA stack (and base model) it needs merged."""

from __future__ import annotations

from collections.abc import Hashable

from loradeck.errors import LoradeckError
from loradeck.prompt.tags import normalize_weights, parse_prompt
from loradeck.vocab import GenerationRequest


def stack_key(request: GenerationRequest, checkpoint: str | None = None) -> Hashable:
    """(checkpoint, ((name, te, unet, dyn), …)) from the prompt's ``<lora:…>`` tags, weights as the studio applies
    them; two requests with equal keys run on the same merged weights, so one may follow the other for free."""
    try:
        tags = parse_prompt(request.prompt).loras
    except LoradeckError:  # the job will fail with that sentence anyway; give it a key of its own
        return (request.checkpoint or checkpoint or "", ("invalid", request.prompt))
    if request.normalize_lora_weights:
        tags = normalize_weights(tags)
    return (request.checkpoint or checkpoint or "", tuple((t.name, t.te, t.unet, t.dyn) for t in tags))
