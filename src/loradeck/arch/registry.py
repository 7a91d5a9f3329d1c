"""Family → Arch, and the detections that loop over the families instead of naming them."""

from __future__ import annotations

import re
from collections.abc import Iterable

from loradeck.arch import demo, flux, sd1, sd2, sdxl
from loradeck.arch.base import Arch
from loradeck.families import Family

ARCHS: dict[Family, Arch] = {m.ARCH.family: m.ARCH for m in (sd1, sd2, sdxl, demo, flux)}
# checkpoint markers are checked most specific first: an SDXL file also carries CLIP-L keys
_CHECKPOINT_ORDER = (Family.FLUX, Family.SDXL, Family.SD2, Family.SD1)


def arch_of(family: Family) -> Arch | None:
    return ARCHS.get(family)


def native_size(family: Family, default: int = 512) -> int:
    a = ARCHS.get(family)
    return a.native_size if a else default


def checkpoint_family(keys: Iterable[str]) -> Family:
    """The family whose single-file markers the keys carry (a quick look: ``formats.ldm_family`` checks more)."""
    keys = list(keys)
    for family in _CHECKPOINT_ORDER:
        if ARCHS[family].is_checkpoint(keys):
            return family
    return Family.UNKNOWN


def lora_family_by_names(names: Iterable[str]) -> Family | None:
    """A family that a LoRA's (normalised) module names alone prove: Flux's names are its own. None otherwise."""
    names = list(names)
    for family in (Family.FLUX,):
        pattern = re.compile("^(" + "|".join(ARCHS[family].lora_name_markers) + ")")
        if any(pattern.match(n) for n in names):
            return family
    return None
