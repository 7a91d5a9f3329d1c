"""Names in requests, checked at the door so that none of them leads outside the server's folders.

Every route that takes a checkpoint, a LoRA, a training folder or an output name calls one of these before it touches
the studio; the rules themselves (and ``allowed_paths``) are in ``loradeck.library.confine``. Path-like names answer
422 with one sentence that is the same whether or not the target exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loradeck.errors import CheckpointNotFound, InvalidRequest, ModelLoadError
from loradeck.library.confine import (
    check_checkpoint_name,
    check_lora_name,
    check_output_name,
    network_checkpoint,
    network_checkpoint_file,
    network_dataset,
)


def checkpoint_title(studio: Any, name: str | None) -> str:
    """What a checkpoint name from a request resolves to: "demo", a library title or an allowed path. PathNotAllowed
    (422) for other paths, ModelLoadError (→ 404 by the caller) when a plain name matches nothing."""
    return network_checkpoint(studio.library, studio.settings, name)


def check_generation_names(body: Any) -> None:
    """The names an A1111 txt2img/img2img body carries: the checkpoint overrides and the ``<lora:NAME>`` tags."""
    from loradeck.prompt.tags import parse_prompt

    overrides = body.override_settings or {}
    for value in (overrides.get("sd_model_checkpoint"), body.refiner_checkpoint, body.hr_checkpoint_name):
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(f"A checkpoint name must be text, not {type(value).__name__}.")
        check_checkpoint_name(value)
    if not body.disable_extra_networks:  # otherwise the tags are stripped unread
        for tag in parse_prompt(body.prompt).loras:
            check_lora_name(tag.name)


def train_inputs(studio: Any, data: str, base: str, name: str) -> tuple[Path, str]:
    """(training folder, base model file or "demo") for a training request from the network; the output name must be
    one plain file name. 422 for paths outside the datasets folder / library, 404 for an unknown checkpoint."""
    check_output_name(name)
    folder = network_dataset(studio.settings, data)
    try:
        base_file = network_checkpoint_file(studio.library, studio.settings, base)
    except ModelLoadError as exc:  # a plain name that matches nothing: the library's sentence, as a 404
        raise CheckpointNotFound(str(exc)) from None
    return folder, base_file
