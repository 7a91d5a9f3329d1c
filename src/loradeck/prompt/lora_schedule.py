"""Per-step LoRA weights: loractl's ``w@step`` points and the block-weight extension's ``start=``/``stop=``/``step=``.

Syntax (one choice, documented in the README):

* ``<lora:name:0@0,1@0.5>`` — the weight is a list of ``weight@step`` points, linear in between, constant before
  the first and after the last (sd-webui-loractl). A ``step`` with a decimal point is a fraction of the sampling
  steps (``0.5`` of 20 = step 10), otherwise a step number; steps count from 0 (the first step is step 0). In the
  weight position (``<lora:name:SCHEDULE>``) it schedules the U-Net and the text encoder gets the schedule's peak
  (the prompt is encoded once per job); ``<lora:name:TE:SCHEDULE>`` gives the text encoder its own number.
* ``start=N`` / ``stop=N`` / ``step=A-B`` (sd-webui-lora-block-weight): the U-Net part acts from step N on / until
  step N, counted from 1 as that extension counts; a value strictly between 0 and 1 is a fraction of the steps.
  The text encoder keeps its weight, as there (conditioning is computed before sampling).

A1111 itself ignores named arguments it does not know and cuts ``<lora:…>`` tags out of the prompt before prompt
editing, so ``[<lora:turbo:1>::2]`` stays what it is in A1111: the LoRA for every step. Use ``stop=3`` instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from loradeck.errors import InvalidRequest


@dataclass(frozen=True)
class Point:
    weight: float
    at: float  # a step number (from 0), or a fraction of the steps when ``fraction``
    fraction: bool

    def step(self, total: int) -> float:
        return self.at * total if self.fraction else self.at


@dataclass(frozen=True)
class LoraSchedule:
    """The U-Net weight of one LoRA tag as a function of the sampling step."""

    points: tuple[Point, ...] = ()  # empty: the constant ``weight``
    weight: float = 1.0
    start: float | None = None  # lbw extension: first active step, counted from 1 (a fraction when 0 < v < 1)
    stop: float | None = None  # lbw extension: first inactive step, counted from 1

    def weight_at(self, i: int, total: int) -> float:
        """The weight at 0-based step ``i`` of ``total``."""
        if self.start is not None and i < _step(self.start, total) - 1:
            return 0.0
        if self.stop is not None and i >= _step(self.stop, total) - 1:
            return 0.0
        if not self.points:
            return self.weight
        xs = [p.step(total) for p in self.points]
        if i <= xs[0]:
            return self.points[0].weight
        for (x0, p0), (x1, p1) in zip(zip(xs, self.points), zip(xs[1:], self.points[1:]), strict=False):
            if i <= x1:
                return p1.weight if x1 == x0 else p0.weight + (p1.weight - p0.weight) * (i - x0) / (x1 - x0)
        return self.points[-1].weight

    @property
    def peak(self) -> float:
        """The weight of largest magnitude (sign kept): what the text encoder gets for a scheduled weight."""
        if not self.points:
            return self.weight
        return max((p.weight for p in self.points), key=abs)


def _step(value: float, total: int) -> int:
    """The extension's reading of start/stop: 0 < v < 1 is a fraction of the steps (at least step 1)."""
    return max(1, round(value * total)) if 0 < value < 1 else int(value)


def is_schedule(value: str) -> bool:
    return "@" in value


def parse_points(value: str, where: str) -> tuple[Point, ...]:
    """``0@0,1@0.5`` → points sorted by position (as written when positions are of one kind)."""
    points = []
    for item in value.split(","):
        w, sep, at = item.strip().partition("@")
        if not sep:
            raise InvalidRequest(f"The weight schedule '{value.strip()}' in {where} needs weight@step items.")
        try:
            weight, pos = float(w), float(at)
        except ValueError:
            raise InvalidRequest(
                f"The weight schedule item '{item.strip()}' in {where} is not a number@step."
            ) from None
        if not (math.isfinite(weight) and math.isfinite(pos)) or pos < 0:
            raise InvalidRequest(f"The weight schedule item '{item.strip()}' in {where} is out of range.")
        points.append(Point(weight, pos, "." in at))
    kinds = {p.fraction for p in points}
    if len(kinds) == 1:
        points.sort(key=lambda p: p.at)
    elif any(b.at < a.at for a, b in zip(points, points[1:], strict=False) if a.fraction == b.fraction):
        raise InvalidRequest(f"The weight schedule '{value.strip()}' in {where} is not in step order.")
    return tuple(points)


def parse_step_bound(value: str, name: str, where: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise InvalidRequest(f"{name}={value.strip()} in {where} is not a step number.") from None
    if not math.isfinite(v) or v < 0:
        raise InvalidRequest(f"{name}={value.strip()} in {where} is not a step number.")
    return v
