"""X/Y/Z plots: every cell a generation planned up front, run as one device job in the order that merges each LoRA
stack and loads each checkpoint once, then drawn as A1111's labelled grid.

Each cell is the generation a solo ``generate`` with the same settings draws (same plan, same code path), saved as
its own PNG with its own infotext; the grid PNG carries the first cell's infotext plus A1111's ``Script: X/Y/Z plot``
fields.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from loradeck.engine.outputs import save_png
from loradeck.prompt.grid_axes import Axis, check_size
from loradeck.prompt.infotext import quote
from loradeck.services.plan import GenerationPlan
from loradeck.vocab import GenerationRequest, GenerationResult, Progress

NOTHING = Axis("nothing", "", (None,), "")


@dataclass(frozen=True)
class GridRequest:
    base: GenerationRequest
    x: Axis | None = None
    y: Axis | None = None
    z: Axis | None = None

    @property
    def axes(self) -> tuple[Axis, Axis, Axis]:
        return (self.x or NOTHING, self.y or NOTHING, self.z or NOTHING)

    def cell_requests(self) -> list[GenerationRequest]:
        """One request per cell, x fastest (index = ix + iy·nx + iz·nx·ny)."""
        x, y, z = self.axes
        check_size([x, y, z])
        out = []
        for vz, vy, vx in itertools.product(z.values, y.values, x.values):
            request = self.base
            for axis, value in ((x, vx), (y, vy), (z, vz)):
                if axis is not NOTHING:
                    request = axis.apply(request, value)
            out.append(request)
        return out


@dataclass
class GridResult:
    grid: Image.Image
    grid_path: Path | None
    infotext: str
    cells: list[GenerationResult]  # x-fastest order
    order: list[int]  # the cells' indices in the order they ran
    merges: int  # cells whose LoRA stack had to be merged (the patcher recomputed weights)
    stack_switches: int  # times the LoRA stack or checkpoint changed between consecutive cells
    checkpoint_loads: int
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        """What the CLI's --json and the jobs route show: the files written and what the run cost."""
        return {
            "grid": str(self.grid_path) if self.grid_path else None,
            "cells": [str(c.images[0].path) if c.images and c.images[0].path else None for c in self.cells],
            "order": self.order,
            "lora_merges": self.merges,
            "stack_switches": self.stack_switches,
            "checkpoint_loads": self.checkpoint_loads,
            "warnings": self.warnings,
            "interrupted": self.interrupted,
        }

    @property
    def cell_images(self) -> list[Image.Image]:
        return [c.images[0].image for c in self.cells if c.images]


def run_order(plans: list[GenerationPlan], loaded: str | None, last_key: Hashable) -> list[int]:
    """Cells grouped so each checkpoint loads once and each stack merges once: checkpoints in order of first
    appearance (the loaded one first), stacks likewise (the merged one first), cells in grid order within a group."""

    def rank(values: list[Hashable], first: Hashable) -> dict[Hashable, int]:
        seen: dict[Hashable, int] = {}
        for v in values:
            seen.setdefault(v, len(seen) + 1)
        if first in seen:
            seen[first] = 0
        return seen

    ckpt = rank([p.checkpoint.title for p in plans], loaded)
    stack = rank([p.stack_key for p in plans], last_key)
    return sorted(range(len(plans)), key=lambda i: (ckpt[plans[i].checkpoint.title], stack[plans[i].stack_key], i))


class _CellControl:
    """What one cell's run polls and reports to: the grid job's events; progress counted over the whole grid."""

    def __init__(self, job: Any, done: int, cells: int):
        self._job, self._done, self._cells = job, done, cells
        self.interrupted, self.skipped = job.interrupted, job.skipped

    def report(self, p: Progress) -> None:
        self._job.report(Progress(p.step, p.total, phase="grid", batch=self._done, batches=self._cells))


def run_grid(
    request: GridRequest,
    plans: list[GenerationPlan],
    job: Any,
    *,
    generate: Callable[[GenerationPlan, Any], GenerationResult],
    order: list[int],
    outputs: Path,
) -> GridResult:
    """Every cell in ``order`` through ``generate`` (the studio's own job body), then the labelled grid."""
    results: dict[int, GenerationResult] = {}
    merges = loads = switches = 0
    previous: GenerationPlan | None = None
    for done, i in enumerate(order):
        if job.interrupted.is_set():
            break
        plan = plans[i]
        result = generate(plan, _CellControl(job, done, len(order)))
        results[i] = result
        merges += result.lora_recomputed > 0
        if previous is not None and previous.stack_key != plan.stack_key:
            switches += 1
        if previous is None or previous.checkpoint.title != plan.checkpoint.title:
            loads += 1
        previous = plan
        if result.interrupted:
            break
    cells = [results.get(i) or _empty(plans[i]) for i in range(len(plans))]
    first = next((c for c in cells if c.images), None)
    blank = Image.new("RGB", (plans[0].width, plans[0].height), "black")
    pictures = [c.images[0].image if c.images else blank for c in cells]
    x, y, z = request.axes
    grid = _draw(pictures, x, y, z)
    infotext = _grid_infotext(first.images[0].infotext if first else "", request)
    path = None
    if request.base.save and first is not None:
        folder = outputs / "txt2img-grids" / dt.date.today().isoformat()  # A1111's grid folder
        path = save_png(grid, folder, first.seeds[0], infotext)
    warnings = sorted({w for c in cells for w in c.warnings})
    interrupted = len(results) < len(plans) or any(c.interrupted for c in results.values())
    return GridResult(grid, path, infotext, cells, list(results), merges, switches, loads, warnings, interrupted)


def _empty(plan: GenerationPlan) -> GenerationResult:
    return GenerationResult([], plan.recorded_prompt, plan.request.negative_prompt, [], interrupted=True)


def _draw(pictures: list[Image.Image], x: Axis, y: Axis, z: Axis) -> Image.Image:
    from loradeck.services.grid_image import draw_grid

    def labels(axis: Axis) -> list[str]:
        return [axis.text(v) if axis is not NOTHING else "" for v in axis.values]

    return draw_grid(pictures, labels(x), labels(y), labels(z))


def _grid_infotext(first: str, request: GridRequest) -> str:
    """The first cell's infotext with A1111's X/Y/Z plot fields added to its parameters line."""
    fields = ["Script: X/Y/Z plot"]
    for name, axis in zip("XYZ", request.axes, strict=True):
        if axis is not NOTHING:
            values = ", ".join(axis.text(v).split(": ", 1)[-1] for v in axis.values)
            fields += [f"{name} Type: {quote(axis.label)}", f"{name} Values: {quote(values)}"]
    return f"{first}, {', '.join(fields)}" if first else ", ".join(fields)
