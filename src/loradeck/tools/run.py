"""``run_tool``: one LoRA tool request → a written LoRA file and a report. Service-facing and interface-free."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import torch

from loradeck.errors import Cancelled, InvalidRequest
from loradeck.families import Family
from loradeck.lora.files.read import DeltaSet, read_deltas
from loradeck.lora.files.write import (
    SAVE_DTYPES,
    LowRankModule,
    as_text,
    base_model_version,
    kohya_tensors,
    modelspec,
    network_facts,
    save_lora,
)
from loradeck.lora.formats import load_lora
from loradeck.lora.ops.merge import ModuleStat
from loradeck.tools.requests import ConvertRequest, ExtractRequest, MergeRequest, ResizeRequest, ToolResult

ProgressFn = Callable[[int, int, str], None]  # (done, total, what)
Request = MergeRequest | ResizeRequest | ExtractRequest | ConvertRequest
_NAME = re.compile(r"^[\w][\w.-]*$")


def pick_device(device: str | None) -> str:
    """The request's device, else the GPU when there is one (SVDs are many times faster there), else the CPU."""
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def run_tool(
    request: Request, on_progress: ProgressFn | None = None, cancel: Callable[[], bool] | None = None
) -> ToolResult:
    """Run one tool; raises InvalidRequest/FormatError (bad input, one sentence) or Cancelled (``cancel()`` true)."""
    from loradeck.tools import actions

    if request.precision not in SAVE_DTYPES:
        raise InvalidRequest(f"precision must be one of fp16, bf16, fp32; got {request.precision!r}.")
    t0 = time.perf_counter()
    device = pick_device(request.device)

    def step(done: int, total: int, what: str) -> None:
        if cancel is not None and cancel():
            raise Cancelled(f"{request.tool} was cancelled at {what} ({done}/{total}); nothing was written.")
        if on_progress is not None:
            on_progress(done, total, what)

    handler = {
        "merge": actions.merge,
        "resize": actions.resize,
        "extract": actions.extract,
        "convert": actions.convert,
    }[request.tool]
    return handler(request, device, step, t0)


# ------------------------------------------------------------------------------------------------ shared helpers
def output_path(request: Request, default_name: str) -> Path:
    """``request.out``, else ``lora_dir/<name>.safetensors`` — a plain file name that cannot leave the folder."""
    if request.out is not None:
        out = Path(request.out).expanduser()
        if out.suffix.lower() != ".safetensors":
            raise InvalidRequest(f"the output must be a .safetensors file; {out.name} is not.")
        return out
    if request.lora_dir is None:
        raise InvalidRequest("give an output file (--out) or a LoRA folder to write into.")
    name = request.name or default_name
    if not _NAME.match(name) or name in (".", ".."):
        raise InvalidRequest(f"output name {name!r} must be a plain file name (letters, digits, '_', '-', '.').")
    out = Path(request.lora_dir) / f"{name.removesuffix('.safetensors')}.safetensors"
    if out.exists() and not request.overwrite:
        raise InvalidRequest(f"{out.name} already exists in the LoRA folder; pick another name or allow overwriting.")
    return out


def read_input(path: Path, base_weights=None, device="cpu") -> DeltaSet:
    return read_deltas(load_lora(path), base=base_weights, device=device)


def common_family(sets: list[DeltaSet]) -> Family:
    known = {ds.family for ds in sets if ds.family is not Family.UNKNOWN}
    if len(known) > 1:
        names = ", ".join(f"{ds.source} ({ds.family.label})" for ds in sets)
        raise InvalidRequest(f"the LoRAs are made for different base models: {names}.")
    return known.pop() if known else Family.UNKNOWN


def stats_report(stats: list[ModuleStat]) -> tuple[float | None, list[dict]]:
    """Overall retained Frobenius share √(Σkept/Σtotal) and the per-module rows."""
    rows = [
        {"name": s.name, "rank": s.rank, "retained": round(s.retained, 6), "error": s.error, "norm": s.total**0.5}
        for s in stats
    ]
    total = sum(s.total for s in stats)
    return ((sum(s.kept for s in stats) / total) ** 0.5 if total > 0 else None), rows


def write_result(
    request: Request,
    path: Path,
    tensors: dict[str, torch.Tensor],
    family: Family,
    record: dict,
    extra_meta: dict[str, str] | None = None,
    modules: list[LowRankModule] | None = None,
) -> None:
    """Write atomically with kohya metadata, the tool's record under ``loradeck.tool`` and sshs hashes."""
    title = path.stem
    meta: dict[str, str] = {}
    meta |= extra_meta or {}
    if modules is not None:
        meta |= network_facts(modules)
    meta |= {
        "ss_output_name": title,
        "ss_base_model_version": base_model_version(family),
        "ss_v2": as_text(family is Family.SD2),
    }
    meta |= modelspec(family, title)
    meta["loradeck.tool"] = json.dumps(record, ensure_ascii=False)
    meta["ss_training_comment"] = meta.get("ss_training_comment") or record.get("comment", "None")
    save_lora(path, tensors, {k: as_text(v) for k, v in meta.items()},
              family=family if request.out is None else None,
              description=record.get("comment"))  # fmt: skip


def low_rank_tensors(modules: list[LowRankModule], precision: str) -> dict[str, torch.Tensor]:
    return kohya_tensors(modules, SAVE_DTYPES[precision])
