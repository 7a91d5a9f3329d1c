"""What a model file is (family, format, rank/alpha), decided from its header without loading weights.

``summarize_lora`` is the ONE place the library asks "what LoRA is this?": it uses the LoRA engine's
``loradeck.lora.inspect.describe_header`` when that exists and falls back to metadata and key names otherwise.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from loradeck.arch import checkpoint_family
from loradeck.errors import LoradeckError
from loradeck.families import Family
from loradeck.formats import json_safe
from loradeck.formats.safetensors_io import SafetensorsHeader


@dataclass(frozen=True)
class Summary:
    family: Family = Family.UNKNOWN
    format: str = "unknown"
    rank: int | None = None
    alpha: float | None = None
    module_count: int = 0

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "family": self.family.value})

    @classmethod
    def from_json(cls, text: str | None) -> Summary:
        if not text:
            return cls()
        doc = json.loads(text)
        return cls(**{**doc, "family": Family(doc.get("family", "unknown"))})


def decode_metadata(metadata: dict[str, str]) -> dict[str, Any]:
    """Safetensors metadata as A1111 shows it: string values that start with ``{`` are JSON-decoded when they parse."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, str) and value.startswith("{"):
            # bounded: a value nested 1,000 deep or holding NaN stays the raw string (the API encodes it safely)
            decoded = json_safe.loads_or_none(value)
            if decoded is not None:
                out[key] = decoded
                continue
        out[key] = value
    return out


def family_from_metadata(metadata: dict[str, str]) -> Family:
    """kohya/modelspec metadata: ``ss_base_model_version``, ``ss_v2``, ``modelspec.architecture``."""
    arch = metadata.get("modelspec.architecture", "").lower()
    base = metadata.get("ss_base_model_version", "").lower()
    if base.startswith("flux") or arch.startswith("flux"):
        return Family.FLUX
    if base.startswith("sdxl") or arch.startswith("stable-diffusion-xl"):
        return Family.SDXL
    if metadata.get("ss_v2") == "True" or base.startswith("sd_v2") or arch.startswith("stable-diffusion-v2"):
        return Family.SD2
    if base.startswith("sd_v1") or arch.startswith("stable-diffusion-v1"):
        return Family.SD1
    return Family.UNKNOWN


def summarize_lora(header: SafetensorsHeader, path: Path | None = None) -> Summary:
    """Family, format, rank, alpha and module count of a LoRA header (``path`` lets the engine read alpha scalars).

    Family: the engine's key/shape detection, else metadata, else A1111's rule (kohya metadata alone means SD1).
    """
    describe_header = _engine_describer()
    if describe_header is not None:
        try:
            s = describe_header(header, path)
            family = Family(s.family)
            if family is Family.UNKNOWN:
                family = family_from_metadata(header.metadata)
            if family is Family.UNKNOWN:
                family = _a1111_default(header.metadata)
            return Summary(family, str(s.format), s.rank, s.alpha, s.module_count)
        except LoradeckError:
            pass  # a layout the engine does not know: the library still lists it, with what metadata says
    return _fallback_summary(header)


def summarize_pickle_lora(path: Path) -> Summary | None:
    """A ``.pt``/``.ckpt`` LoRA read through the safe unpickler (``torch.load(weights_only=True)``) and the engine's
    parser; None when it does not read as a LoRA (it stays listed, as in A1111, and says why when it is used)."""
    try:
        from loradeck.lora import load_lora

        lora = load_lora(path)
    except (LoradeckError, ImportError):
        return None
    return Summary(lora.family, lora.format, lora.rank, lora.alpha, len(lora.modules))


def _a1111_default(metadata: dict[str, str]) -> Family:
    """A1111 ``detect_version``: kohya metadata without v2/sdxl markers means SD1; no metadata means Unknown."""
    return Family.SD1 if any(k.startswith("ss_") for k in metadata) else Family.UNKNOWN


@cache
def _engine_describer() -> Callable[[SafetensorsHeader], Any] | None:
    """``loradeck.lora.inspect.describe_header`` if the LoRA engine provides it (looked up once: a failed import
    searches sys.path again on every call)."""
    try:
        from loradeck.lora.inspect import describe_header
    except ImportError:
        return None
    return describe_header


_FORMAT_MARKERS = (  # parameter suffix → format name, first match wins
    ("hada_w1_a", "loha"),
    ("lokr_w1", "lokr"),
    ("lora_down.weight", "lora"),
    ("lora_A.weight", "peft"),
    ("on_input", "ia3"),
    ("oft_blocks", "oft"),
    (".diff", "full"),
)


def _fallback_summary(header: SafetensorsHeader) -> Summary:
    keys = list(header.tensors)
    fmt, marker = "unknown", None
    for suffix, name in _FORMAT_MARKERS:
        if any(k.endswith(suffix) or suffix in k for k in keys):
            fmt, marker = name, suffix
            break
    modules = {k.split(".", 1)[0] for k in keys} if fmt != "peft" else {k.rsplit(".lora_", 1)[0] for k in keys}
    rank = None
    if marker in ("lora_down.weight", "lora_A.weight"):
        first = next(k for k in keys if k.endswith(marker))
        rank = header.tensors[first].shape[0] if header.tensors[first].shape else None
    family = family_from_metadata(header.metadata)
    if family is Family.UNKNOWN:
        family = _family_from_lora_keys(header)
    return Summary(family, fmt, rank, _float(header.metadata.get("ss_network_alpha")), len(modules))


def _family_from_lora_keys(header: SafetensorsHeader) -> Family:
    keys = header.tensors
    if any(k.startswith(("lora_te1_", "lora_te2_", "text_encoder_2.")) for k in keys):
        return Family.SDXL
    # The text encoder width tells SD1 (768) from SD2 (1024) when only kohya TE keys are there.
    for name, info in keys.items():
        if name.startswith("lora_te_") and name.endswith("lora_down.weight") and len(info.shape) == 2:
            return {768: Family.SD1, 1024: Family.SD2}.get(info.shape[1], Family.UNKNOWN)
    return _a1111_default(header.metadata)


def _float(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is None or math.isfinite(value) else None


def summarize_checkpoint(header: SafetensorsHeader) -> Summary:
    """Family of a single-file (A1111/Civitai layout) checkpoint from its text-encoder keys."""
    keys = header.tensors
    fam = checkpoint_family(keys)  # each family's markers (arch/), most specific first
    if fam is Family.UNKNOWN:
        fam = family_from_metadata(header.metadata)
    return Summary(family=fam, format="checkpoint", module_count=len(keys))


def summarize_diffusers_dir(folder: Path) -> Summary:
    """Family of a diffusers folder: an explicit ``loradeck_family`` in model_index.json, the pipeline class, else
    the text encoder width (768 SD1, 1024 SD2)."""
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    fam = Family.UNKNOWN
    if isinstance(index, dict) and index.get("loradeck_family") in {f.value for f in Family}:
        fam = Family(index["loradeck_family"])
    elif isinstance(index, dict) and "Flux" in str(index.get("_class_name", "")):
        fam = Family.FLUX
    elif isinstance(index, dict) and "XL" in str(index.get("_class_name", "")):
        fam = Family.SDXL
    else:
        te = folder / "text_encoder" / "config.json"
        if te.is_file():
            width = json.loads(te.read_text(encoding="utf-8")).get("hidden_size")
            fam = {768: Family.SD1, 1024: Family.SD2}.get(width, Family.UNKNOWN)
    return Summary(family=fam, format="diffusers")
