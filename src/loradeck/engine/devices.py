"""Which device and dtype to run on."""

from __future__ import annotations

import torch

from loradeck.errors import InvalidRequest

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidRequest(f"Device {name!r} was asked for but this torch build sees no CUDA GPU.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InvalidRequest("Device 'mps' was asked for but Metal is not available here.")
    return torch.device(name)


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """fp16 on GPUs, fp32 on the CPU, unless asked otherwise."""
    if name == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    if name not in DTYPES:
        raise InvalidRequest(f"Unknown dtype {name!r}; use one of auto, {', '.join(DTYPES)}.")
    return DTYPES[name]
