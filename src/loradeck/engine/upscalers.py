"""Picture upscalers by A1111 name: "Lanczos"/"Nearest" (PIL) and model upscalers (ESRGAN, RealESRGAN, SwinIR, DAT, …).

Model upscalers are ``.pth``/``.safetensors`` files in A1111's folders under ``<home>/models`` (``ESRGAN``,
``RealESRGAN``, ``SwinIR``, ``DAT``, ``HAT``, ``ScuNET``); each is named by its file stem, as A1111 does
("4x-UltraSharp"). Files are read by us — safetensors, or ``torch.load(weights_only=True)`` — and spandrel only
detects the architecture from the tensors and builds the network.

spandrel without torchvision: spandrel's ``__init__`` imports every architecture it knows, and two of them (LaMa,
an inpainter, and RestoreFormer, a face restorer) import three names from ``torchvision.transforms.functional`` at
module level. loradeck never runs either, and torchvision must not be installed (it pins its own torch build), so
``import_spandrel`` puts a stand-in module with those three names in ``sys.modules`` for the duration of the import
only, then removes it: no other code can mistake it for torchvision. The stand-ins raise if ever called. Install
spandrel with ``pip install --no-deps spandrel==0.4.2 einops`` (its wheel declares torchvision as a dependency).
"""

from __future__ import annotations

import sys
import threading
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from loradeck.empty_init import BUILD_LOCK
from loradeck.errors import InvalidRequest, ModelLoadError

PIXEL_UPSCALERS = {"Lanczos": Image.Resampling.LANCZOS, "Nearest": Image.Resampling.NEAREST}
MODEL_FOLDERS = ("ESRGAN", "RealESRGAN", "SwinIR", "DAT", "HAT", "ScuNET")  # A1111's folders under models/
SUFFIXES = (".pth", ".safetensors")
MAX_PASSES = 3  # A1111 runs a model at most 3 times to reach a target size, then resizes with Lanczos

_spandrel_lock = threading.Lock()
_cache: dict[tuple[str, float], Any] = {}


@dataclass(frozen=True)
class ModelUpscaler:
    name: str  # file stem, the name clients send
    path: Path
    folder: str  # which A1111 folder it came from


def find_model_upscalers(models_root: Path) -> dict[str, ModelUpscaler]:
    """The model upscaler files under ``models_root`` by name (first folder in MODEL_FOLDERS wins a clash)."""
    found: dict[str, ModelUpscaler] = {}
    for folder in MODEL_FOLDERS:
        base = models_root / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if path.suffix.lower() in SUFFIXES and path.is_file() and not path.name.startswith("."):
                found.setdefault(path.stem, ModelUpscaler(path.stem, path, folder))
    return found


# ---------------------------------------------------------------------------------------------------- spandrel
def _stand_in_torchvision() -> dict[str, types.ModuleType]:
    def unavailable(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("torchvision is not installed; loradeck does not run spandrel's LaMa or RestoreFormer.")

    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = types.SimpleNamespace(BILINEAR="bilinear", NEAREST="nearest", BICUBIC="bicubic")
    functional.rotate = unavailable
    functional.normalize = unavailable
    transforms = types.ModuleType("torchvision.transforms")
    transforms.functional = functional
    root = types.ModuleType("torchvision")
    root.transforms = transforms
    return {"torchvision": root, "torchvision.transforms": transforms, "torchvision.transforms.functional": functional}


def import_spandrel() -> Any:
    """The spandrel module, imported with the torchvision stand-in in place (see the module docstring)."""
    with _spandrel_lock:
        if "spandrel" in sys.modules:
            return sys.modules["spandrel"]
        stand_in = _stand_in_torchvision()
        if any(name in sys.modules for name in stand_in):  # a real torchvision: use it as is
            import spandrel

            return spandrel
        sys.modules.update(stand_in)
        try:
            import spandrel
        except ImportError as exc:
            raise ModelLoadError(
                f"Model upscalers need spandrel: pip install --no-deps spandrel==0.4.2 einops ({exc})."
            ) from None
        finally:
            for name in stand_in:
                sys.modules.pop(name, None)
        return spandrel


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of an upscaler file: safetensors, or a pickle read with ``weights_only=True``."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a broken or hostile file is the user's input: one sentence, not a traceback
        raise ModelLoadError(f"The upscaler file {path} cannot be read ({type(exc).__name__}: {exc}).") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"The upscaler file {path} holds no state dict.")
    return data


def load_upscaler(path: Path) -> Any:
    """A spandrel ImageModelDescriptor for the file (cached by path and mtime), in eval mode on the CPU."""
    key = (str(path), path.stat().st_mtime)
    if key in _cache:
        return _cache[key]
    spandrel = import_spandrel()
    state = spandrel.canonicalize_state_dict(read_state_dict(path))
    try:
        with BUILD_LOCK:  # spandrel builds real modules: not while another thread builds on the meta device
            model = spandrel.ModelLoader(registry=spandrel.MAIN_REGISTRY).load_from_state_dict(state)
    except Exception as exc:
        raise ModelLoadError(f"{path.name} is not an upscaler model spandrel knows ({exc}).") from None
    if not isinstance(model, spandrel.ImageModelDescriptor):
        raise ModelLoadError(f"{path.name} is a {model.architecture.name} model, not an image upscaler.")
    model.eval()
    if len(_cache) > 4:
        _cache.pop(next(iter(_cache)))
    _cache[key] = model
    return model


def run_model(model: Any, picture: Image.Image) -> Image.Image:
    """One pass of the model over the picture (RGB in [0, 1]; output rounded to 8 bits as A1111 does)."""
    array = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)
    with torch.inference_mode():
        out = model(tensor.to(model.device, model.dtype)).float().clamp(0, 1)
    pixels = (out[0].permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(pixels)


# ---------------------------------------------------------------------------------------------------- upscale
def available(models_root: Path) -> list[str]:
    """Every upscaler name usable for pictures, in A1111's order (None, Lanczos, Nearest, then models)."""
    return ["None", *PIXEL_UPSCALERS, *find_model_upscalers(models_root)]


def upscale(picture: Image.Image, width: int, height: int, name: str, models_root: Path) -> Image.Image:
    """The picture at ``width``×``height`` through upscaler ``name`` (InvalidRequest naming it when unknown).

    A model upscaler runs until the picture is at least the target size (at most MAX_PASSES times), then Lanczos
    brings it to the exact size, as A1111's ``Upscaler.upscale`` does.
    """
    if name in (None, "", "None"):
        return picture.resize((width, height), Image.Resampling.LANCZOS) if picture.size != (width, height) else picture
    if name in PIXEL_UPSCALERS:
        return picture.resize((width, height), PIXEL_UPSCALERS[name])
    entry = find_model_upscalers(models_root).get(name)
    if entry is None:
        raise InvalidRequest(f"Upscaler {name!r} is not available; choose one of {available(models_root)}.")
    model = load_upscaler(entry.path)
    for _ in range(MAX_PASSES):
        if picture.width >= width and picture.height >= height:
            break
        picture = run_model(model, picture)
    return picture if picture.size == (width, height) else picture.resize((width, height), Image.Resampling.LANCZOS)


def model_scale(name: str, models_root: Path) -> int | None:
    entry = find_model_upscalers(models_root).get(name)
    return int(load_upscaler(entry.path).scale) if entry else None
