"""Between the Generate form and the rest: infotext → form values ("send to prompt", PNG info), form → request.

Pure: strings and numbers in, a dict or a GenerationRequest out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loradeck.errors import InvalidRequest
from loradeck.prompt.infotext import infotext_settings
from loradeck.prompt.pnginfo import hires_from_params, variation_from_params
from loradeck.prompt.samplers import resolve_sampler
from loradeck.prompt.tags import rename_by_hashes
from loradeck.vocab import GenerationRequest, HiresFix

# The form's fields, in the order the Generate tab lists its components.
FORM_FIELDS = (
    "prompt",
    "negative",
    "sampler",
    "schedule",
    "steps",
    "cfg",
    "seed",
    "width",
    "height",
    "batch_count",
    "batch_size",
    "hires",
    "hr_scale",
    "hr_upscaler",
    "hr_steps",
    "hr_denoise",
    "variation_seed",
    "variation_strength",
)


def fields_from_infotext(text: str, name_for_hash: Callable[[str], str | None] | None = None) -> dict[str, Any]:
    """The form values an infotext records (only those it has). ``name_for_hash`` maps a ``Lora hashes`` entry to a
    local LoRA's prompt name, so a picture made with a LoRA renamed since still finds it (A1111's paste-back)."""
    if not (text or "").strip():
        raise InvalidRequest("There are no generation parameters to send: the image carries no infotext.")
    s = infotext_settings(text)
    prompt = s.prompt
    if name_for_hash and s.lora_hashes:
        prompt = rename_by_hashes(prompt, s.lora_hashes, name_for_hash)
    values: dict[str, Any] = {"prompt": prompt, "negative": s.negative_prompt}
    if s.sampler:
        values["sampler"], values["schedule"] = resolve_sampler(s.sampler, s.schedule_type)
    for key, value in (
        ("steps", s.steps),
        ("cfg", s.cfg_scale),
        ("seed", s.seed),
        ("width", s.width),
        ("height", s.height),
    ):
        if value is not None:
            values[key] = value
    variation = variation_from_params(s.params)
    values["variation_strength"] = variation[1] if variation else 0.0
    if variation:
        values["variation_seed"] = variation[0]
    hr = hires_from_params(s.params)
    values["hires"] = hr is not None
    if hr is not None:
        values |= {"hr_upscaler": hr.upscaler, "hr_steps": hr.steps, "hr_denoise": hr.denoising_strength}
        if not (hr.resize_x or hr.resize_y):
            values["hr_scale"] = hr.scale
    return values


def build_request(values: dict[str, Any], checkpoint: str | None) -> GenerationRequest:
    """A request from the form. Width/height 0 mean "the model's own size"; a seed of -1 means random."""

    def number(key: str, kind: type, default: Any) -> Any:
        value = values.get(key)
        if value is None or value == "":
            return default
        try:
            return kind(value)
        except (TypeError, ValueError):
            raise InvalidRequest(f"The field {key.replace('_', ' ')} must be a number, not {value!r}.") from None

    width, height = number("width", int, 0), number("height", int, 0)
    return GenerationRequest(
        prompt=values.get("prompt") or "",
        negative_prompt=values.get("negative") or "",
        sampler=values.get("sampler") or "Euler a",
        scheduler=values.get("schedule") or "Automatic",
        steps=number("steps", int, 20),
        cfg_scale=number("cfg", float, 7.0),
        seed=number("seed", int, -1),
        width=width or None,
        height=height or None,
        batch_count=number("batch_count", int, 1),
        batch_size=number("batch_size", int, 1),
        checkpoint=checkpoint or None,
        variation_seed=number("variation_seed", int, -1),
        variation_strength=number("variation_strength", float, 0.0),
        hires=HiresFix(
            scale=number("hr_scale", float, 2.0),
            upscaler=values.get("hr_upscaler") or "Latent",
            steps=number("hr_steps", int, 0),
            denoising_strength=number("hr_denoise", float, 0.7),
        )
        if values.get("hires")
        else None,
    )


def seed_of(infotext: str) -> int | None:
    """The seed an infotext records (for "reuse last seed")."""
    try:
        return infotext_settings(infotext).seed if infotext else None
    except InvalidRequest:
        return None
