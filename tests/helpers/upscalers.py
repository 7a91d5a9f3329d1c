"""Random-weight upscaler model files of three architectures spandrel detects (ESRGAN RRDB, Compact/SRVGG, SwinIR),
built offline from spandrel's own architecture classes, and the reference forward pass to compare against."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from loradeck.engine.upscalers import import_spandrel


def make_network(kind: str, seed: int = 0) -> torch.nn.Module:
    import_spandrel()
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(seed)
    if kind == "esrgan":
        net = ESRGAN(num_filters=8, num_blocks=1, scale=4)
    elif kind == "compact":
        net = Compact(num_feat=8, num_conv=2, upscale=4)
    elif kind == "swinir":
        net = SwinIR(
            embed_dim=12,
            depths=[1],
            num_heads=[2],
            window_size=4,
            upscale=2,
            img_size=16,
            upsampler="pixelshuffledirect",
        )
    else:
        raise ValueError(kind)
    with torch.no_grad():  # random weights large enough that the output is not a flat grey
        for p in net.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.2)
    return net.eval()


def write_upscaler(path: Path, kind: str, seed: int = 0) -> torch.nn.Module:
    """Save the network's state dict (.pth via torch.save, .safetensors via safetensors); returns the network.

    Built under loradeck's BUILD_LOCK: a server's model load in another thread switches the whole process to empty
    (meta) weights while it builds, and a network built meanwhile would be saved as meta tensors."""
    from loradeck.empty_init import BUILD_LOCK

    with BUILD_LOCK:
        net = make_network(kind, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return net


def reference_upscale(net: torch.nn.Module, picture: Image.Image) -> Image.Image:
    """spandrel's own forward: the descriptor spandrel builds from the same tensors, on the same [0, 1] input."""
    from loradeck.empty_init import BUILD_LOCK

    spandrel = import_spandrel()
    with BUILD_LOCK:
        descriptor = spandrel.ModelLoader().load_from_state_dict(net.state_dict())
    x = torch.from_numpy(np.asarray(picture.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        y = descriptor(x).clamp(0, 1)
    return Image.fromarray((y[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
