"""LoRA Block Weight (the sd-webui-lora-block-weight extension): per-block multipliers, its presets, its block ids.

The extension's model, which this module follows:

* A weight vector is one of its layouts — 17 entries (SD1/SD2 LoRA), 12 (SDXL LoRA), 20 (SDXL LyCORIS) or 26 (the
  full U-Net) — each entry naming a block of the original (SGM) U-Net: ``BASE`` (the text encoders), ``IN00``–
  ``IN11`` (``input_blocks.N``), ``M00`` (``middle_block``), ``OUT00``–``OUT11`` (``output_blocks.N``). Every
  vector is spread onto the 26 ids; a block the layout does not name gets 0 (so the 17-entry ``ALL`` leaves SDXL's
  ``OUT00``–``OUT02`` at 0, exactly as in the extension — the planner warns when that drops modules a LoRA has).
* A module's multiplier is its block's weight times the tag's multiplier: the text-encoder weight (``te``) for
  ``BASE``, the U-Net weight (``unet``) for every U-Net block, ResNets and attention alike. A module that lies in no
  block (``time_embed``, ``out``, SDXL's ``label_emb``; only LyCORIS "full" files have them) keeps 1, as there.
* Presets are ``NAME:v1,v2,…`` lines. The built-in ones are the extension's defaults; ``<home>/lbwpresets.txt`` in
  the same format adds to them and overrides a built-in of the same name. As in the extension a line counts only if
  it has a ``:``, a known number of entries and no ``#``; other lines are comments.
* The extension's random (``R``, ``U``) and inherited (``X``) entries are refused: a picture must be reproducible
  from its infotext.

Flux (61 entries: CLIP, T5, IN, D00–D18, S00–S37, OUT) is not supported: loradeck loads no Flux models.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from loradeck.errors import InvalidRequest
from loradeck.lora.keymap import DENOISERS, KeyMap

BLOCK_IDS = ("BASE",) + tuple(f"IN{i:02d}" for i in range(12)) + ("M00",) + tuple(f"OUT{i:02d}" for i in range(12))
BASE, MID = 0, 13

# The extension's layouts, by length: which of the 26 ids each entry names (it calls the middle block MID or M00).
LAYOUTS: dict[int, tuple[str, ...]] = {
    17: ("BASE", "IN01", "IN02", "IN04", "IN05", "IN07", "IN08", "M00") + tuple(f"OUT{i:02d}" for i in range(3, 12)),
    12: ("BASE", "IN04", "IN05", "IN07", "IN08", "M00") + tuple(f"OUT{i:02d}" for i in range(6)),
    20: ("BASE",) + tuple(f"IN{i:02d}" for i in range(9)) + ("M00",) + tuple(f"OUT{i:02d}" for i in range(9)),
    26: BLOCK_IDS,
}

# The extension's built-in presets (its DEF_WEIGHT_PRESET), all in the 17-entry layout.
BUILTIN_PRESETS: dict[str, str] = {
    "NONE": "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0",
    "ALL": "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1",
    "INS": "1,1,1,1,0,0,0,0,0,0,0,0,0,0,0,0,0",
    "IND": "1,0,0,0,1,1,1,0,0,0,0,0,0,0,0,0,0",
    "INALL": "1,1,1,1,1,1,1,0,0,0,0,0,0,0,0,0,0",
    "MIDD": "1,0,0,0,1,1,1,1,1,1,1,1,0,0,0,0,0",
    "OUTD": "1,0,0,0,0,0,0,0,1,1,1,1,0,0,0,0,0",
    "OUTS": "1,0,0,0,0,0,0,0,0,0,0,0,1,1,1,1,1",
    "OUTALL": "1,0,0,0,0,0,0,0,1,1,1,1,1,1,1,1,1",
    "ALL0.5": "0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5",
}

_SGM_BLOCK = re.compile(r"^lora_unet_(?:(input_blocks)_(\d+)_|(middle_block)_|(output_blocks)_(\d+)_)")


@dataclass(frozen=True)
class BlockWeights:
    """One ``lbw=`` value resolved: a weight per block id (26, ``BLOCK_IDS`` order) and how it was written."""

    values: tuple[float, ...]
    layout: int  # entries written: 12, 17, 20 or 26
    text: str  # as written in the tag: a preset name or the vector

    def weight(self, block: int | None) -> float:
        """The multiplier of a module in ``block`` (None: outside every block, kept at 1 as the extension does)."""
        return 1.0 if block is None else self.values[block]

    def names(self, block: int) -> bool:
        """Whether the written layout has an entry for ``block`` (otherwise its weight is the implicit 0)."""
        return BLOCK_IDS[block] in LAYOUTS[self.layout]


def spread(entries: Iterable[float]) -> tuple[float, ...]:
    """A vector of one of the layouts spread onto the 26 block ids; blocks it does not name get 0."""
    values = list(entries)
    ids = LAYOUTS.get(len(values))
    if ids is None:
        raise ValueError(f"{len(values)} entries is not a block-weight layout")
    out = [0.0] * len(BLOCK_IDS)
    for block_id, v in zip(ids, values, strict=True):
        out[BLOCK_IDS.index(block_id)] = float(v)
    return tuple(out)


def parse_presets(text: str) -> dict[str, str]:
    """``NAME:v1,…`` lines of an lbwpresets.txt; lines the extension would not load are skipped the same way."""
    presets: dict[str, str] = {}
    for line in text.splitlines():
        if ":" not in line or "#" in line or (line.count(",") + 1) not in LAYOUTS:
            continue
        name, _, vector = line.partition(":")
        presets[name.strip()] = vector.strip()
    return presets


def load_presets(path: Path | None) -> dict[str, str]:
    """The built-in presets, with those of ``path`` (``<home>/lbwpresets.txt``) added when it exists."""
    presets = dict(BUILTIN_PRESETS)
    if path is not None and path.is_file():
        presets |= parse_presets(path.read_text(encoding="utf-8", errors="replace"))
    return presets


def resolve(value: str, presets: Mapping[str, str], where: str) -> BlockWeights:
    """``lbw=value`` (a preset name, case-sensitive as in the extension, or a vector) as BlockWeights.

    ``where`` names the tag for the error, e.g. ``<lora:x:1:lbw=FOO>``. Raises InvalidRequest for an unknown preset,
    a vector of another length, a non-number, or a random/inherited entry.
    """
    value = value.strip()
    vector = presets.get(value, value)
    entries = [e.strip() for e in vector.split(",")]
    if len(entries) not in LAYOUTS:
        if len(entries) == 1:
            raise InvalidRequest(
                f"lbw={value} in {where} is neither a block-weight preset ({', '.join(sorted(presets))}) "
                "nor a vector of 12, 17, 20 or 26 weights."
            )
        raise InvalidRequest(f"lbw= in {where} has {len(entries)} weights; block-weight vectors have 12, 17, 20 or 26.")
    numbers = []
    for e in entries:
        if e[:1] in ("R", "U", "X"):
            raise InvalidRequest(
                f"lbw={value} in {where} uses the random/inherited entry '{e}', which loradeck does not support "
                "(a picture must be reproducible from its infotext); write a number."
            )
        try:
            number = float(e)
        except ValueError:
            raise InvalidRequest(f"The block weight '{e}' of lbw={value} in {where} is not a number.") from None
        if not math.isfinite(number):
            raise InvalidRequest(f"The block weight '{e}' of lbw={value} in {where} is not a finite number.")
        numbers.append(number)
    return BlockWeights(spread(numbers), len(numbers), value)


def sgm_block(name: str) -> int | None:
    """Block index (into BLOCK_IDS) of an SGM-spelled U-Net module name ``lora_unet_input_blocks_4_1_…``."""
    m = _SGM_BLOCK.match(name)
    if m is None:
        return None
    if m.group(1):
        n = int(m.group(2))
        return 1 + n if n < 12 else None
    if m.group(3):
        return MID
    n = int(m.group(5))
    return MID + 1 + n if n < 12 else None


def block_table(keymap: KeyMap) -> dict[str, int | None]:
    """Canonical module name → block index for every module of ``keymap``: text encoders are BASE, U-Net modules the
    block of their SGM name (the SDXL canonical spelling, the registered alias of SD1/SD2's diffusers spelling)."""
    sgm_of = {canon: alias for alias, canon in keymap.aliases.items() if _SGM_BLOCK.match(alias)}
    table: dict[str, int | None] = {}
    for name, ref in keymap.all_modules().items():
        if ref.component not in DENOISERS:
            table[name] = BASE
        else:
            table[name] = sgm_block(sgm_of.get(name, name))
    return table


def missing_blocks_warning(lora_name: str, weights: BlockWeights, touched: Iterable[int | None]) -> str | None:
    """A warning when the LoRA has modules in blocks the written layout has no entry for (they get weight 0)."""
    missing = sorted({b for b in touched if b is not None and not weights.names(b)})
    if not missing:
        return None
    ids = ", ".join(BLOCK_IDS[b] for b in missing)
    return (
        f"lbw={weights.text} for LoRA {lora_name} is a {weights.layout}-entry vector with no weight for {ids}, "
        f"where the LoRA has modules; they get weight 0 (as in the block-weight extension)."
    )
