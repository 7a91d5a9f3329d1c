"""From the `<lora:…>` tags of a prompt to a stack ready to merge: resolve, check, weigh, hash."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loradeck.errors import LoradeckError
from loradeck.families import Family

if TYPE_CHECKING:
    from loradeck.requests import GenerationRequest
    from loradeck.studio import LoadedModel, Studio


@dataclass
class LoraPlan:
    clean_prompt: str  # what the text encoder sees (tags removed, trigger words added if asked)
    recorded_prompt: str  # what the infotext records (tags kept, effective weights)
    stack: list[Any] = field(default_factory=list)  # loradeck.lora.StackEntry
    lora_hashes: str = ""  # A1111's "name: hash12, …"
    warnings: list[str] = field(default_factory=list)
    not_applied: dict[str, str] = field(default_factory=dict)  # LoRA name → why it was dropped (lora/coverage.py)
    scheduled: list[Any] = field(default_factory=list)  # lora.sidecar.ScheduledLora: U-Net weight changes per step


def plan_loras(studio: Studio, request: GenerationRequest, model: LoadedModel) -> LoraPlan:
    from loradeck.library.triggers import add_trigger_words, missing_trigger_words, trigger_warning
    from loradeck.lora import StackEntry
    from loradeck.lora.block_weights import load_presets, resolve
    from loradeck.lora.sidecar import ScheduledLora
    from loradeck.prompt.tags import normalize_weights, parse_prompt, rewrite_tag_weights

    parsed = parse_prompt(request.prompt)
    warnings = list(parsed.warnings)
    tags = normalize_weights(parsed.loras) if request.normalize_lora_weights else parsed.loras
    recorded = rewrite_tag_weights(request.prompt, tags) if request.normalize_lora_weights else request.prompt
    clean = parsed.text
    stack, hashes, active = [], [], []
    not_applied: dict[str, str] = {}
    schedules: list[ScheduledLora] = []
    presets = load_presets(studio.settings.lbw_presets_path) if any(t.lbw for t in tags) else {}
    for tag in tags:
        block_weights = resolve(tag.lbw, presets, tag.text) if tag.lbw else None  # a bad lbw= fails the request
        try:
            entry = studio.library.resolve_lora(tag.name)
        except LoradeckError as exc:  # unknown name: say so, go on with the rest (A1111 does; Forge crashes)
            warnings.append(not_applied.setdefault(tag.name, str(exc)))
            continue
        if entry.family not in (Family.UNKNOWN, model.family):
            why = f"LoRA {tag.name} is for {Family(entry.family).label} but the model is {model.family.label}; skipped."
            warnings.append(not_applied.setdefault(tag.name, why))
            continue
        try:
            lora = studio.load_lora_file(entry.path)
        except LoradeckError as exc:
            warnings.append(not_applied.setdefault(tag.name, str(exc)))
            continue
        if tag.dyn is not None:
            lora = lora.truncated(tag.dyn)
        scheduled = tag.schedule is not None  # its U-Net part runs beside the model, not merged (lora/sidecar.py)
        stack.append(StackEntry(lora, tag.te, 0.0 if scheduled else tag.unet, block_weights))
        if scheduled:
            schedules.append(ScheduledLora(lora, tag.schedule.weight_at, block_weights))
        active.append(entry)
        short = entry.lora_hash
        if short:
            name = tag.name.replace(":", "").replace(",", "")
            hashes.append(f"{name}: {short[:12]}")
    if request.add_trigger_words:
        clean = add_trigger_words(clean, active)
        recorded = add_trigger_words(recorded, active)
    else:
        warnings += [trigger_warning(entry, words) for entry, words in missing_trigger_words(clean, active)]
    return LoraPlan(clean, recorded, stack, ", ".join(hashes), warnings, not_applied, schedules)
