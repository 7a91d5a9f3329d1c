"""Extra-network prompt tags: ``<lora:name:te:unet:dyn>`` and friends, as A1111 reads them.

Every ``<kind:args>`` tag is cut out of the text the encoder sees, whatever the kind. Only ``lora`` (and its old alias
``lyco``) activates anything, and only in the positive prompt. Where A1111 silently drops every LoRA of a prompt on a
non-numeric weight, we stop with an error that names the tag.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from loradeck.errors import InvalidRequest
from loradeck.prompt.lora_schedule import LoraSchedule, Point, is_schedule, parse_points, parse_step_bound

TAG_RE = re.compile(r"<(\w+):([^>]+)>")
LORA_KINDS = ("lora", "lyco")
_KNOWN_UNSUPPORTED = ("hypernet",)


@dataclass(frozen=True)
class LoraTag:
    name: str
    te: float = 1.0
    unet: float = 1.0
    dyn: int | None = None  # DyLoRA rank to truncate to
    text: str = ""  # the tag as written in the prompt
    lbw: str | None = None  # block weights (``lbw=`` preset or vector, as written; lora/block_weights.py reads it)
    schedule: LoraSchedule | None = None  # per-step U-Net weight (``w@step`` points, start=/stop=); None: constant

    @property
    def weight(self) -> float:
        """The one number a card or a tutorial calls "the weight": the U-Net multiplier."""
        return self.unet


@dataclass(frozen=True)
class ParsedPrompt:
    text: str  # what the text encoder sees: every tag removed, everything else untouched
    loras: tuple[LoraTag, ...] = ()
    warnings: tuple[str, ...] = ()


def parse_prompt(prompt: str, *, negative: bool = False) -> ParsedPrompt:
    """Cut every extra-network tag out of ``prompt``; read the ``<lora:…>`` ones (not in a negative prompt).

    Raises InvalidRequest naming the tag for a weight that is not a number or a tag without a name.
    """
    loras: list[LoraTag] = []
    warnings: list[str] = []
    for match in TAG_RE.finditer(prompt):
        kind, args, text = match.group(1), match.group(2), match.group(0)
        if kind in LORA_KINDS:
            if negative:
                warnings.append(
                    f"The LoRA tag {text} in the negative prompt was ignored (LoRAs only apply from the prompt)."
                )
                continue
            tag, notes = _parse_lora(args, text)
            loras.append(tag)
            warnings += notes
        elif kind in _KNOWN_UNSUPPORTED:
            warnings.append(f"Skipping {text}: {kind} networks are not supported.")
        else:
            warnings.append(f"Skipping unknown extra network {text}.")
    seen: set[str] = set()
    for tag in loras:
        if tag.name in seen:
            warnings.append(f"LoRA {tag.name} appears more than once in the prompt; each tag is applied.")
        seen.add(tag.name)
    return ParsedPrompt(strip_tags(prompt), tuple(loras), tuple(warnings))


def strip_tags(prompt: str) -> str:
    """The prompt without any ``<kind:…>`` tag (A1111 leaves the surrounding spaces and commas alone; so do we)."""
    return TAG_RE.sub("", prompt)


def parse_lora_args(args: str, text: str = "") -> LoraTag:
    """Read the argument string of a lora tag: positional ``name:te:unet:dyn``, named ``te=``/``unet=``/``dyn=``."""
    return _parse_lora(args, text or f"<lora:{args}>")[0]


def _parse_lora(args: str, text: str) -> tuple[LoraTag, list[str]]:
    positional: list[str] = []
    named: dict[str, str] = {}
    for item in args.split(":"):
        parts = item.split("=", 2)
        if len(parts) == 2:  # A1111: exactly one '=' makes a named argument, anything else is positional
            named[parts[0].strip()] = parts[1]
        else:
            positional.append(item)
    name = positional[0].strip() if positional else ""
    if not name:
        raise InvalidRequest(f"The prompt tag {text} has no LoRA name.")
    notes = []  # A1111 ignores what it does not know; we say so
    unknown = sorted(set(named) - {"te", "unet", "dyn", "lbw", "start", "stop", "step"})
    if unknown:
        notes.append(f"The prompt tag {text} has unknown argument(s) {', '.join(unknown)}; they were ignored.")
    if len(positional) > 4:
        notes.append(f"The prompt tag {text} has more than name:te:unet:dyn; the rest was ignored.")
    points: tuple[Point, ...] = ()
    if len(positional) > 1 and is_schedule(positional[1]):  # <lora:name:SCHEDULE>: U-Net scheduled, te its peak
        points = parse_points(positional[1], text)
        te = LoraSchedule(points).peak
    else:
        te = _weight(positional[1], text) if len(positional) > 1 else 1.0
    te = _weight(named["te"], text) if "te" in named else te
    if len(positional) > 2 and is_schedule(positional[2]):
        points = parse_points(positional[2], text)
        unet = LoraSchedule(points).peak
    else:
        unet = _weight(positional[2], text, lbw_hint=True) if len(positional) > 2 else te
        points = points if len(positional) <= 2 else ()
    unet = _weight(named["unet"], text) if "unet" in named else unet
    schedule = _schedule(points, unet, named, text)
    dyn = _rank(positional[3], text) if len(positional) > 3 else None
    dyn = _rank(named["dyn"], text) if "dyn" in named else dyn
    lbw = named["lbw"].strip() if "lbw" in named else None
    if lbw == "":
        raise InvalidRequest(f"The prompt tag {text} has an empty lbw=.")
    return LoraTag(name=name, te=te, unet=unet, dyn=dyn, text=text, lbw=lbw, schedule=schedule), notes


def _schedule(points: tuple[Point, ...], unet: float, named: dict[str, str], text: str) -> LoraSchedule | None:
    start = parse_step_bound(named["start"], "start", text) if "start" in named else None
    stop = parse_step_bound(named["stop"], "stop", text) if "stop" in named else None
    if "step" in named:  # the extension's step=A-B
        a, sep, b = named["step"].partition("-")
        if not sep:
            raise InvalidRequest(f"step={named['step'].strip()} in {text} must be written FIRST-LAST.")
        start, stop = parse_step_bound(a, "step", text), parse_step_bound(b, "step", text)
    if not points and start is None and stop is None:
        return None
    return LoraSchedule(points=tuple(points), weight=unet, start=start, stop=stop)


def _weight(value: str, text: str, lbw_hint: bool = False) -> float:
    try:
        w = float(value)
    except ValueError:
        hint = f" (block weights are written lbw={value.strip()})" if lbw_hint else ""
        raise InvalidRequest(f"The weight '{value.strip()}' in the prompt tag {text} is not a number{hint}.") from None
    if not math.isfinite(w):
        raise InvalidRequest(f"The weight '{value.strip()}' in the prompt tag {text} is not a finite number.")
    return w


def _rank(value: str, text: str) -> int:
    try:
        dyn = int(value)
    except ValueError:
        raise InvalidRequest(
            f"The dyn rank '{value.strip()}' in the prompt tag {text} is not a whole number."
        ) from None
    if dyn <= 0:
        raise InvalidRequest(f"The dyn rank '{value.strip()}' in the prompt tag {text} must be positive.")
    return dyn


# ------------------------------------------------------------------------------------------------ weights
def normalize_weights(tags: Sequence[LoraTag], *, target: float = 1.0, digits: int = 4) -> list[LoraTag]:
    """Rescale a stack so its weights (absolute U-Net multipliers) sum to ``target``; te is scaled by the same factor.

    Results are rounded to ``digits`` decimals so the weight written into the infotext is exactly the one applied
    (a re-render from the PNG then gives the same pixels). A stack whose weights sum to 0 is returned unchanged.
    """
    total = sum(abs(t.unet) for t in tags if t.schedule is None)  # scheduled tags keep their schedule
    if total == 0:
        return list(tags)
    factor = target / total
    return [
        t
        if t.schedule is not None
        else replace(t, te=round(t.te * factor, digits), unet=round(t.unet * factor, digits))
        for t in tags
    ]


def format_weight(w: float) -> str:
    """Shortest text that reads back as the same float: ``1``, ``0.8``, ``0.3333``."""
    s = repr(float(w))
    return s[:-2] if s.endswith(".0") else s


def format_tag(
    name: str,
    te: float = 1.0,
    unet: float | None = None,
    dyn: int | None = None,
    kind: str = "lora",
    lbw: str | None = None,
) -> str:
    """``<lora:name:w>``, or ``<lora:name:te:unet>`` when they differ, with ``:dyn`` and ``:lbw=…`` appended if given."""
    unet = te if unet is None else unet
    parts = [name, format_weight(te)]
    if unet != te or dyn is not None:
        parts.append(format_weight(unet))
    if dyn is not None:
        parts.append(str(dyn))
    if lbw is not None:
        parts.append(f"lbw={lbw}")
    return f"<{kind}:{':'.join(parts)}>"


def rewrite_tag_weight(prompt: str, name: str, te: float, unet: float | None = None) -> str:
    """Every ``<lora:name…>`` tag of ``prompt`` rewritten with these weights (dyn and the lyco/lora kind kept)."""

    def sub(match: re.Match[str]) -> str:
        kind = match.group(1)
        if kind not in LORA_KINDS:
            return match.group(0)
        tag = parse_lora_args(match.group(2), match.group(0))
        if tag.name != name or tag.schedule is not None:  # a schedule is kept as written
            return match.group(0)
        return format_tag(name, te, unet, tag.dyn, kind, tag.lbw)

    return TAG_RE.sub(sub, prompt)


def rewrite_tag_weights(prompt: str, tags: Sequence[LoraTag]) -> str:
    """The prompt with its i-th lora tag rewritten from ``tags[i]`` (e.g. after ``normalize_weights``).

    ``tags`` must be the lora tags of this very prompt, in order (as ``parse_prompt(prompt).loras``).
    """
    it = iter(tags)

    def sub(match: re.Match[str]) -> str:
        kind = match.group(1)
        if kind not in LORA_KINDS:
            return match.group(0)
        tag = next(it, None)
        if tag is None or tag.schedule is not None:
            return match.group(0)
        return format_tag(tag.name, tag.te, tag.unet, tag.dyn, kind, tag.lbw)

    return TAG_RE.sub(sub, prompt)


def rename_by_hashes(prompt: str, hashes: Mapping[str, str], name_for_hash: Callable[[str], str | None]) -> str:
    """A1111's paste-back of ``Lora hashes``: each ``<lora:NAME:`` whose NAME has a recorded hash is renamed to the
    local LoRA with that short hash (``name_for_hash`` returns None when there is none; the name is then kept)."""

    def sub(match: re.Match[str]) -> str:
        kind, args = match.group(1), match.group(2)
        name, sep, rest = args.partition(":")
        if kind not in LORA_KINDS or name not in hashes:
            return match.group(0)
        local = name_for_hash(hashes[name])
        return f"<{kind}:{local}{sep}{rest}>" if local else match.group(0)

    return TAG_RE.sub(sub, prompt)
