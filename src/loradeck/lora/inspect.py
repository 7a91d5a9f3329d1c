"""What a LoRA file is: a cheap header-only summary (library scans) and a full inspection (``lora inspect``)."""

from __future__ import annotations

import os
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loradeck.families import Family
from loradeck.formats import json_safe
from loradeck.formats.safetensors_io import SafetensorsHeader
from loradeck.lora.formats import detect_lora_family, group_keys, load_lora, module_kind
from loradeck.lora.keymap import keymap_for_family
from loradeck.lora.report import match_lora

_META_FIELDS = (
    "ss_output_name",
    "ss_network_module",
    "ss_network_dim",
    "ss_network_alpha",
    "ss_network_args",
    "ss_base_model_version",
    "ss_sd_model_name",
    "ss_resolution",
    "ss_num_train_images",
    "ss_epoch",
    "ss_steps",
    "modelspec.architecture",
    "modelspec.title",
)
_SCALARS = {"F32": "<f", "F16": "<e", "F64": "<d"}


@dataclass(frozen=True)
class LoraSummary:
    format: str
    family: Family
    rank: int | None
    alpha: float | None
    module_count: int


def _header_format(groups: dict[str, dict[str, tuple[int, ...]]]) -> str:
    kinds: list[str] = []
    for shapes in groups.values():
        kind = module_kind(set(shapes))
        if kind == "lora":
            down = shapes["lora_down.weight"]
            if (len(down) == 4 and down[2] > 1) or "lora_mid.weight" in shapes:
                kind = "locon"
        if kind and kind not in kinds:
            kinds.append(kind)
    if "locon" in kinds and "lora" in kinds:
        kinds.remove("lora")
    if any("dora_scale" in s for s in groups.values()):
        kinds.append("dora")
    return "+".join(kinds) if kinds else "unknown"


def _rank_of(shapes: dict[str, tuple[int, ...]]) -> int | None:
    for key in ("lora_down.weight", "hada_w1_b", "lokr_w1_b", "lokr_w2_b"):
        if key in shapes:
            return shapes[key][0]
    return None


def _read_scalar(f, header: SafetensorsHeader, key: str) -> float | None:
    info = header.tensors[key]
    if info.dtype == "BF16" and info.end - info.start == 2:
        f.seek(info.start)
        return struct.unpack("<f", b"\0\0" + f.read(2))[0]
    fmt = _SCALARS.get(info.dtype)
    if fmt is None or info.end - info.start != struct.calcsize(fmt):
        return None
    f.seek(info.start)
    return struct.unpack(fmt, f.read(info.end - info.start))[0]


def describe_header(header: SafetensorsHeader, path: str | os.PathLike | None = None) -> LoraSummary:
    """Format, family, rank, alpha, module count from a validated header alone.

    With ``path`` the (2–4 byte) ``alpha`` scalars are read to report the most common alpha; nothing else is read.
    """
    groups_keys, _, _ = group_keys(list(header.tensors))
    groups = {m: {p: header.tensors[k].shape for p, k in params.items()} for m, params in groups_keys.items()}
    groups = {m: s for m, s in groups.items() if module_kind(set(s)) is not None}
    ranks = Counter(r for r in map(_rank_of, groups.values()) if r is not None)
    alpha = None
    if path is not None:
        alpha_keys = [p["alpha"] for m, p in groups_keys.items() if "alpha" in p and m in groups]
        if alpha_keys:
            with open(path, "rb") as f:
                alphas = Counter(a for a in (_read_scalar(f, header, k) for k in alpha_keys) if a is not None)
            alpha = alphas.most_common(1)[0][0] if alphas else None
    return LoraSummary(
        format=_header_format(groups),
        family=detect_lora_family(groups),
        rank=ranks.most_common(1)[0][0] if ranks else None,
        alpha=alpha,
        module_count=len(groups),
    )


def inspect_lora(path: str | os.PathLike) -> dict:
    """Everything ``loradeck lora inspect`` shows, as a JSON-ready dict."""
    lora = load_lora(Path(path))
    total, matched_names, unmatched = len(lora.modules), [], list(lora.unparsed_keys)
    if lora.family is not Family.UNKNOWN:
        keymap = keymap_for_family(lora.family)
        report, matched = match_lora(lora, keymap)
        matched_names = list(dict.fromkeys(spec.name for spec, _ in matched))  # a fused module's pieces: once
        unmatched = report.unmatched_keys
        total = len(keymap.modules) + (len(keymap.conv_modules) if "locon" in lora.format else 0)
    metadata = lora.metadata
    summary: dict[str, Any] = {k: metadata[k] for k in _META_FIELDS if k in metadata}
    if "ss_tag_frequency" in metadata:
        summary["top_tags"] = _top_tags(metadata["ss_tag_frequency"])
    return {
        "file": str(Path(path)),
        "format": lora.format,
        "layout": lora.layout,
        "family": lora.family.value,
        "rank": lora.rank,
        "alpha": lora.alpha,
        "modules_in_file": len(lora.modules),
        "modules_matched": len(matched_names),
        "modules_total": total,
        "coverage": round(len(matched_names) / total, 4) if total else 0.0,
        "coverage_percent": round(100 * len(matched_names) / total, 1) if total else 0.0,
        "file_modules_matched_percent": round(100 * len(matched_names) / len(lora.modules), 1) if lora.modules else 0.0,
        "unmatched_keys": unmatched,
        "bundled_embeddings": {
            name: {"family": e.family.value, "vectors": e.vectors, "shape": e.shape} for name, e in lora.embeddings.items()
        },
        "metadata": summary,
        "metadata_keys": len(metadata),
    }


def _top_tags(text: str, n: int = 10) -> list[str]:
    freq = json_safe.loads_or_none(text)  # bounded depth, no NaN/Infinity
    counts: Counter[str] = Counter()
    for tags in freq.values() if isinstance(freq, dict) else []:
        if isinstance(tags, dict):
            counts.update(
                {str(k).strip(): int(v) for k, v in tags.items() if isinstance(v, int | float) and abs(v) < 2**53}
            )
    return [t for t, _ in counts.most_common(n)]
