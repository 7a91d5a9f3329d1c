"""Optimizers and learning-rate schedules by the names users pick (docs/reference/kohya-training.md §3).

Optional optimizers (AdamW8bit: bitsandbytes, Prodigy: prodigyopt, Lion: lion-pytorch) are imported only when
asked for; a missing package is one clear sentence, not a traceback, and never a new hard dependency.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import torch

from loradeck.errors import InvalidRequest

# name → (module, class, pip package)
_OPTIONAL = {
    "adamw8bit": ("bitsandbytes.optim", "AdamW8bit", "bitsandbytes"),
    "prodigy": ("prodigyopt", "Prodigy", "prodigyopt"),
    "lion": ("lion_pytorch", "Lion", "lion-pytorch"),
}


@dataclass
class OptimizerChoice:
    optimizer: torch.optim.Optimizer
    description: str  # kohya ``ss_optimizer``: "module.Class(args)"


def optimizer_class(name: str) -> type:
    name = name.lower()
    if name == "adamw":
        return torch.optim.AdamW
    if name not in _OPTIONAL:
        raise InvalidRequest(f"Unknown optimizer {name!r}; use adamw, adamw8bit, prodigy or lion.")
    module, cls, package = _OPTIONAL[name]
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise InvalidRequest(
            f"The {cls} optimizer needs the {package} package, which is not installed "
            f"(pip install {package}), or pick --optimizer adamw."
        ) from exc


def make_optimizer(name: str, groups: list[dict[str, Any]], weight_decay: float) -> OptimizerChoice:
    """``groups``: [{"params": [...], "lr": x}, …]; Prodigy wants lr ≈ 1 (kohya warns below 0.1, so do we)."""
    cls = optimizer_class(name)
    args: dict[str, Any] = {"weight_decay": weight_decay}
    if name.lower() == "prodigy" and all(g["lr"] <= 0.1 for g in groups):
        import warnings

        warnings.warn("Prodigy adapts the step size itself: set the learning rate around 1.0.", stacklevel=2)
    optimizer = cls(groups, **args)
    arg_text = ",".join(f"{k}={v}" for k, v in args.items())
    return OptimizerChoice(optimizer, f"{cls.__module__}.{cls.__name__}({arg_text})")


def make_lr_scheduler(name: str, optimizer: torch.optim.Optimizer, warmup: int, total: int):
    """A diffusers/transformers-style LambdaLR; ``constant`` with warmup becomes ``constant_with_warmup``."""
    from diffusers.optimization import get_scheduler

    if name == "constant" and warmup > 0:
        name = "constant_with_warmup"
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)
