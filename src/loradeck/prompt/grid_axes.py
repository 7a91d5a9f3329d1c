"""X/Y/Z plot axes: what a grid varies, parsed from text and applied to a ``GenerationRequest``.

An axis is ``KIND[:TARGET]=V1,V2,…`` (values as A1111 reads them: CSV, quotes allowed, integer and float ranges
``1-5``, ``1-10 (+3)``, ``0-1 [5]``):

- ``seed``, ``var-seed``, ``var-strength``, ``steps``, ``cfg``, ``sampler``, ``schedule``, ``checkpoint``,
  ``size`` (``WxH``), ``clip-skip``, ``denoise``, ``hires-steps``, ``hires-sampler``, ``hires-upscaler``, ``styles``;
- ``lora:NAME`` — the weight of LoRA ``NAME`` (``lora:NAME:te`` / ``lora:NAME:unet`` for one side only); a prompt
  without the tag gets it appended;
- ``swap:NAME`` — every ``<lora:NAME…>`` tag renamed to each value in turn (weights kept);
- ``sr`` — A1111's Prompt S/R: the first value is searched in the prompt and negative prompt and replaced by each
  value in turn. Several terms at once (A1111 can not): ``sr=red|circle,blue|square`` searches ``red`` and
  ``circle`` and replaces them by ``blue`` and ``square``.

Pure: strings in, requests out.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from loradeck.errors import InvalidRequest
from loradeck.prompt.tags import LORA_KINDS, TAG_RE, format_tag, parse_lora_args, parse_prompt, rewrite_tag_weight
from loradeck.vocab import GenerationRequest

MAX_CELLS = 1000

_INT_RANGE = re.compile(r"\s*([+-]?\d+)\s*-\s*([+-]?\d+)(?:\s*\(([+-]\d+)\s*\))?\s*")
_INT_COUNT = re.compile(r"\s*([+-]?\d+)\s*-\s*([+-]?\d+)\s*\[(\d+)\s*\]\s*")
_FLOAT_RANGE = re.compile(r"\s*([+-]?\d+(?:\.\d*)?)\s*-\s*([+-]?\d+(?:\.\d*)?)(?:\s*\(([+-]\d+(?:\.\d*)?)\s*\))?\s*")
_FLOAT_COUNT = re.compile(r"\s*([+-]?\d+(?:\.\d*)?)\s*-\s*([+-]?\d+(?:\.\d*)?)\s*\[(\d+)\s*\]\s*")


@dataclass(frozen=True)
class Axis:
    kind: str  # a key of KINDS
    target: str  # the LoRA name of lora:/swap: axes ("" otherwise), plus ":te"/":unet" for one side
    values: tuple[Any, ...]
    label: str  # what the legend and the infotext call it (A1111's type label where there is one)

    def text(self, value: Any) -> str:
        """A value as the legend shows it."""
        if isinstance(value, float):
            value = round(value, 8)
        if self.kind == "sr" and isinstance(value, tuple):
            value = " | ".join(value)
        if self.kind in ("seed", "steps", "cfg", "var-seed", "var-strength", "clip-skip", "denoise", "hires-steps"):
            return f"{self.label}: {value}"
        if self.kind == "lora":
            return f"{self.target}: {value}"
        return str(value)

    def apply(self, request: GenerationRequest, value: Any) -> GenerationRequest:
        return KINDS[self.kind].apply(self, request, value)


@dataclass(frozen=True)
class AxisKind:
    label: str
    parse: Callable[[str], Any]
    apply: Callable[[Axis, GenerationRequest, Any], GenerationRequest]
    numeric: type | None = None  # int/float axes accept ranges


def _field(name: str) -> Callable[[Axis, GenerationRequest, Any], GenerationRequest]:
    return lambda _axis, r, v: replace(r, **{name: v})


def _hires_field(name: str) -> Callable[[Axis, GenerationRequest, Any], GenerationRequest]:
    def apply(_axis: Axis, r: GenerationRequest, v: Any) -> GenerationRequest:
        if r.hires is None:
            raise InvalidRequest(f"A hires axis needs the hires fix turned on (it varies {name}).")
        return replace(r, hires=replace(r.hires, **{name: v}))

    return apply


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[x×]\s*(\d+)\s*", text)
    if not m:
        raise InvalidRequest(f"Grid size value {text!r} is not WIDTHxHEIGHT.")
    return int(m.group(1)), int(m.group(2))


def _apply_size(_axis: Axis, r: GenerationRequest, v: tuple[int, int]) -> GenerationRequest:
    return replace(r, width=v[0], height=v[1])


def _apply_lora_weight(axis: Axis, r: GenerationRequest, w: float) -> GenerationRequest:
    name, _, side = axis.target.partition(":")
    tags = [t for t in parse_prompt(r.prompt).loras if t.name == name]
    if not tags:  # not in the prompt yet: the axis adds it
        te, unet = (w, 0.0) if side == "te" else (0.0, w) if side == "unet" else (w, w)
        return replace(r, prompt=f"{r.prompt} {format_tag(name, te, unet)}".strip())
    te = w if side in ("", "te") else tags[0].te
    unet = w if side in ("", "unet") else tags[0].unet
    return replace(r, prompt=rewrite_tag_weight(r.prompt, name, te, unet))


def _apply_swap(axis: Axis, r: GenerationRequest, new: str) -> GenerationRequest:
    def sub(match: re.Match[str]) -> str:
        kind, args = match.group(1), match.group(2)
        if kind not in LORA_KINDS or parse_lora_args(args, match.group(0)).name != axis.target:
            return match.group(0)
        return f"<{kind}:{new}{args[len(axis.target) :]}>"

    if not any(t.name == axis.target for t in parse_prompt(r.prompt).loras):
        raise InvalidRequest(f"The LoRA swap axis needs <lora:{axis.target}:…> in the prompt.")
    return replace(r, prompt=TAG_RE.sub(sub, r.prompt))


def _apply_sr(axis: Axis, r: GenerationRequest, terms: tuple[str, ...]) -> GenerationRequest:
    search = axis.values[0]
    if len(terms) != len(search):
        raise InvalidRequest(
            f"Prompt S/R value {' | '.join(terms)!r} has {len(terms)} terms; the first has {len(search)}."
        )
    prompt, negative = r.prompt, r.negative_prompt
    for old, new in zip(search, terms, strict=True):
        if old not in prompt and old not in negative:
            raise InvalidRequest(f"Prompt S/R did not find {old!r} in the prompt or the negative prompt.")
        prompt, negative = prompt.replace(old, new), negative.replace(old, new)
    return replace(r, prompt=prompt, negative_prompt=negative)


def _apply_styles(_axis: Axis, r: GenerationRequest, v: str) -> GenerationRequest:
    return replace(r, styles=[*r.styles, *(s.strip() for s in v.split(",") if s.strip())])


def _terms(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split("|"))


KINDS: dict[str, AxisKind] = {
    "seed": AxisKind("Seed", int, _field("seed"), int),
    "var-seed": AxisKind("Var. seed", int, _field("variation_seed"), int),
    "var-strength": AxisKind("Var. strength", float, _field("variation_strength"), float),
    "steps": AxisKind("Steps", int, _field("steps"), int),
    "hires-steps": AxisKind("Hires steps", int, _hires_field("steps"), int),
    "cfg": AxisKind("CFG Scale", float, _field("cfg_scale"), float),
    "sr": AxisKind("Prompt S/R", _terms, _apply_sr),
    "sampler": AxisKind("Sampler", str, _field("sampler")),
    "hires-sampler": AxisKind("Hires sampler", str, _hires_field("sampler")),
    "checkpoint": AxisKind("Checkpoint name", str, _field("checkpoint")),
    "schedule": AxisKind("Schedule type", str, _field("scheduler")),
    "clip-skip": AxisKind("Clip skip", int, _field("clip_skip"), int),
    "denoise": AxisKind("Denoising", float, _field("denoising_strength"), float),
    "hires-upscaler": AxisKind("Hires upscaler", str, _hires_field("upscaler")),
    "styles": AxisKind("Styles", str, _apply_styles),
    "size": AxisKind("Size", _size, _apply_size),
    "lora": AxisKind("LoRA weight", float, _apply_lora_weight, float),
    "swap": AxisKind("LoRA swap", str, _apply_swap),
}


def split_values(text: str) -> list[str]:
    """A1111's reading of an axis field: CSV (quotes keep commas), spaces trimmed, empty entries dropped."""
    rows = csv.reader(io.StringIO(text), skipinitialspace=True)
    return [v.strip() for row in rows for v in row if v.strip()]


def expand_ranges(values: list[str], numeric: type) -> list[Any]:
    """``1-5`` → 1..5, ``1-10 (+3)`` → 1,4,7,10, ``0-1 [5]`` → 5 evenly spaced values (A1111's ranges)."""
    out: list[Any] = []
    count_re, range_re = (_INT_COUNT, _INT_RANGE) if numeric is int else (_FLOAT_COUNT, _FLOAT_RANGE)
    for text in values:
        if (m := count_re.fullmatch(text)) is not None:
            a, b, n = numeric(m.group(1)), numeric(m.group(2)), int(m.group(3))
            step = (b - a) / (n - 1) if n > 1 else 0
            out += [numeric(a + step * i) if numeric is float else int(a + step * i) for i in range(n)]
        elif numeric is int and (m := range_re.fullmatch(text)) is not None:
            a, b, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 1)
            out += list(range(a, b + (1 if s > 0 else -1), s))
        elif numeric is float and (m := range_re.fullmatch(text)) is not None and m.group(3) is not None:
            lo, hi, by = float(m.group(1)), float(m.group(2)), float(m.group(3))
            n = int((hi - lo) / by + 1e-9) + 1
            out += [round(lo + by * i, 8) for i in range(max(n, 0))]
        else:
            try:
                out.append(numeric(text))
            except ValueError:
                raise InvalidRequest(f"Grid value {text!r} is not a number.") from None
        if len(out) > MAX_CELLS:
            raise InvalidRequest(f"A grid axis may have at most {MAX_CELLS} values.")
    return out


def make_axis(kind: str, target: str, raw_values: list[str]) -> Axis:
    spec = KINDS.get(kind)
    if spec is None:
        raise InvalidRequest(f"Unknown grid axis {kind!r}; known: {', '.join(KINDS)}.")
    if kind in ("lora", "swap") and not target.partition(":")[0]:
        raise InvalidRequest(f"A {kind}: axis names its LoRA: {kind}:NAME=….")
    if kind == "lora" and target.partition(":")[2] not in ("", "te", "unet"):
        raise InvalidRequest(f"A lora: axis varies te, unet or both, not {target.partition(':')[2]!r}.")
    if not raw_values:
        raise InvalidRequest(f"The grid axis {kind} has no values.")
    values = expand_ranges(raw_values, spec.numeric) if spec.numeric else [spec.parse(v) for v in raw_values]
    label = f"LoRA {target}" if kind == "lora" else spec.label
    return Axis(kind, target, tuple(values), label)


def parse_axis(text: str) -> Axis:
    """``KIND[:TARGET]=V1,V2,…`` (see the module docstring)."""
    head, sep, values = text.partition("=")
    if not sep:
        raise InvalidRequest(f"Grid axis {text!r} is not KIND=VALUE,VALUE,… (e.g. seed=1,2,3 or lora:stripy=0,0.5,1).")
    kind, _, target = head.strip().partition(":")
    return make_axis(kind.strip().lower(), target.strip(), split_values(values))


def check_size(axes: list[Axis]) -> int:
    cells = 1
    for axis in axes:
        cells *= len(axis.values)
    if cells > MAX_CELLS:
        raise InvalidRequest(f"The grid has {cells} cells; the limit is {MAX_CELLS}.")
    return cells
