"""Scheduled LoRAs at forward time: a hook on each U-Net module adds s(t)·up(down(x)) to its output.

A LoRA whose weight changes during sampling (``lora_schedule.py``) is not merged into the U-Net: re-merging every
step would cost a pass over every touched weight per step. Instead, for one job, each of its U-Net modules gets a
forward hook computing the low-rank path at the current step's weight — a rank-r product, a few percent of the
module's own cost — and nothing when the weight is 0 (the output is then bit-identical to the unpatched module).
Text-encoder modules are merged as usual by the patcher (the prompt is encoded once per job).

Formats without low-rank factors (LoHa, LoKr, full, Tucker LoCon) use their ΔW as the sidecar's weight; IA3 and
DoRA, whose ΔW depends on the original weight in a non-additive way, are refused with one sentence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from loradeck.errors import InvalidRequest
from loradeck.lora.block_weights import BlockWeights, block_table
from loradeck.lora.keymap import KeyMap
from loradeck.lora.math import lowrank_factors, needs_base, weight_delta
from loradeck.lora.report import match_lora
from loradeck.lora.spec import LoraFile

WeightAt = Callable[[int, int], float]  # (0-based step, steps of this pass) → U-Net multiplier


@dataclass
class ScheduledLora:
    lora: LoraFile
    weight_at: WeightAt
    block_weights: BlockWeights | None = None


@dataclass
class _Path:
    """One LoRA's contribution to one module: x → m·s(t)·(up ∘ down)(x), or m·s(t)·F(x; ΔW)."""

    index: int  # which scheduled LoRA (its s(t) lives in ``LoraSidecar.scales``)
    m: float  # block weight (1 without lbw)
    down: torch.Tensor | None
    up: torch.Tensor | None
    delta: torch.Tensor | None


class LoraSidecar:
    """Forward hooks for the U-Net modules of scheduled LoRAs; ``set_step`` before each step, ``remove`` after."""

    def __init__(self, unet: nn.Module, keymap: KeyMap, scheduled: list[ScheduledLora]):
        self.scheduled = scheduled
        self.scales = [0.0] * len(scheduled)
        self._handles: list = []
        blocks = block_table(keymap) if any(s.block_weights for s in scheduled) else {}
        paths: dict[str, list[_Path]] = {}
        modules: dict[str, nn.Module] = {}

        def module_of(ref):
            if ref.component != "unet":
                return None
            try:
                return unet.get_submodule(ref.path)
            except AttributeError:
                return None

        for k, item in enumerate(scheduled):
            _report, matched = match_lora(item.lora, keymap, module_of)
            for spec, ref in matched:
                module = modules.setdefault(ref.path, unet.get_submodule(ref.path))
                if needs_base(spec):
                    raise InvalidRequest(
                        f"LoRA {item.lora.name} has IA3/DoRA modules, whose weight cannot change during sampling; "
                        "give it a constant weight."
                    )
                m = item.block_weights.weight(blocks.get(keymap.canonical(spec.name))) if item.block_weights else 1.0
                if m == 0 or not isinstance(module, nn.Linear | nn.Conv2d):
                    continue
                w = module.weight
                f = lowrank_factors(spec, w.device)
                if f is not None and "diff_b" not in spec.tensors:
                    up, down = f  # up already × α/r; [out, r], [r, in·k·k]
                    if isinstance(module, nn.Conv2d):
                        down = down.reshape(down.shape[0], *w.shape[1:])
                        up = up.reshape(*up.shape, 1, 1)
                    path = _Path(k, m, down.to(w.dtype), up.to(w.dtype), None)
                else:
                    delta = weight_delta(spec, w.detach().float()).reshape(w.shape)
                    path = _Path(k, m, None, None, delta.to(w.dtype))
                paths.setdefault(ref.path, []).append(path)
        for name, plist in paths.items():
            self._handles.append(modules[name].register_forward_hook(self._hook(plist)))

    def _hook(self, plist: list[_Path]):
        scales = self.scales

        def hook(module: nn.Module, args, output):
            x = args[0]
            for p in plist:
                s = scales[p.index] * p.m
                if s == 0:
                    continue
                output = output + s * _path_output(module, p, x)
            return output

        return hook

    def set_step(self, step: int, total: int) -> None:
        """Weights for the step about to run (0-based) of a pass of ``total`` steps."""
        for k, item in enumerate(self.scheduled):
            self.scales[k] = float(item.weight_at(step, total))

    @property
    def modules(self) -> int:
        return len(self._handles)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def _path_output(module: nn.Module, p: _Path, x: torch.Tensor) -> torch.Tensor:
    """(up ∘ down)(x), or F(x; ΔW), with the module's own convolution geometry."""
    if isinstance(module, nn.Conv2d):
        stride, padding, dilation = module.stride, module.padding, module.dilation
        if p.delta is not None:
            return F.conv2d(x, p.delta, None, stride, padding, dilation)
        assert p.down is not None and p.up is not None
        return F.conv2d(F.conv2d(x, p.down, None, stride, padding, dilation), p.up)
    if p.delta is not None:
        return F.linear(x, p.delta)
    assert p.down is not None and p.up is not None
    return F.linear(F.linear(x, p.down), p.up)
