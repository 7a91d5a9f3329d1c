"""The four tools: read inputs, call the math in ``lora.ops``, write the file, report. Called by ``run_tool``."""

from __future__ import annotations

import time
from pathlib import Path

from loradeck.errors import InvalidRequest
from loradeck.families import Family
from loradeck.formats.hashes import hash_file
from loradeck.lora.files.write import SAVE_DTYPES
from loradeck.lora.formats import load_lora
from loradeck.lora.ops import convert as convert_ops
from loradeck.lora.ops.extract import extract_module, max_abs_diff
from loradeck.lora.ops.merge import concat_merge, svd_merge
from loradeck.lora.ops.resize import resize as resize_modules
from loradeck.lora.ops.svd import METHODS
from loradeck.tools.requests import ConvertRequest, ExtractRequest, MergeRequest, ResizeRequest, ToolResult
from loradeck.tools.run import (
    common_family,
    low_rank_tensors,
    output_path,
    read_input,
    stats_report,
    write_result,
)


def _short_hash(path: Path) -> str | None:
    h = hash_file(path)
    return h.autov3 or h.autov2


def _base_weights(base: Path | None):
    if base is None:
        return None
    from loradeck.tools.checkpoints import load_weights

    return load_weights(base).weight


def _rank_arg(value: int | None, what: str) -> None:
    if value is not None and value < 1:
        raise InvalidRequest(f"{what} must be at least 1; got {value}.")


def _result(tool, path, modules, t0, device, stats=None, notes=()) -> ToolResult:
    retained, rows = stats_report(stats) if stats is not None else (None, [])
    ranks = [m.rank for m in modules]
    rank = max(set(ranks), key=ranks.count) if ranks else None
    return ToolResult(tool, path, len(modules), rank, time.perf_counter() - t0, device, retained, rows, list(notes))


# ------------------------------------------------------------------------------------------------ merge
def merge(req: MergeRequest, device: str, step, t0: float) -> ToolResult:
    if len(req.inputs) < 1:
        raise InvalidRequest("merge needs at least one LoRA file (FILE:WEIGHT).")
    _rank_arg(req.rank, "--rank")
    _rank_arg(req.conv_rank, "--conv-rank")
    if req.conv_rank is not None and req.rank is None:
        raise InvalidRequest("--conv-rank needs --rank (an SVD merge); a concat merge keeps every rank.")
    base = _base_weights(req.base)
    sets = [(read_input(Path(p), base, device), float(w)) for p, w in req.inputs]
    family = common_family([ds for ds, _ in sets])
    default = "-".join(Path(p).stem for p, _ in req.inputs)[:80] + "-merged"
    path = output_path(req, default)
    notes = [n for ds, _ in sets for n in ds.notes]
    if req.rank is None:
        modules, stats = concat_merge(sets, device=device, progress=step), None
    else:
        modules, stats = svd_merge(sets, req.rank, req.conv_rank, clamp=req.clamp_quantile, device=device,
                                   progress=step)  # fmt: skip
    record = {
        "tool": "merge",
        "method": "concat" if req.rank is None else "svd",
        "inputs": [{"file": Path(p).name, "weight": float(w), "hash": _short_hash(Path(p))} for p, w in req.inputs],
        "rank": req.rank,
        "conv_rank": req.conv_rank,
        "clamp_quantile": req.clamp_quantile,
        "comment": "merged from " + ", ".join(f"{Path(p).name}:{float(w):g}" for p, w in req.inputs),
    }
    extra = {"modelspec.merged_from": ", ".join(Path(p).stem for p, _ in req.inputs)}
    write_result(req, path, low_rank_tensors(modules, req.precision), family, record, extra, modules)
    return _result("merge", path, modules, t0, device, stats, notes)


# ------------------------------------------------------------------------------------------------ resize
def resize(req: ResizeRequest, device: str, step, t0: float) -> ToolResult:
    if req.input is None:
        raise InvalidRequest("resize needs an input LoRA file.")
    if req.method is not None and req.method not in METHODS:
        raise InvalidRequest(f"--dynamic must be one of {', '.join(METHODS)}; got {req.method!r}.")
    if req.method is not None and (req.param is None or req.param <= 0):
        raise InvalidRequest(f"--dynamic {req.method} needs a positive --param.")
    if req.method is None and req.rank is None:
        raise InvalidRequest("resize needs --rank N, or --dynamic METHOD --param X.")
    if req.method in ("sv_cumulative", "sv_fro") and req.param > 1:
        raise InvalidRequest(f"--param of {req.method} is a share between 0 and 1; got {req.param}.")
    _rank_arg(req.rank, "--rank")
    _rank_arg(req.conv_rank, "--conv-rank")
    src = Path(req.input)
    ds = read_input(src, _base_weights(req.base), device)
    label = f"{req.method}-{req.param:g}" if req.method else f"r{req.rank}"
    path = output_path(req, f"{src.stem}-{label}")
    modules, stats = resize_modules(ds, req.rank, req.conv_rank, method=req.method, param=req.param, device=device,
                                    progress=step)  # fmt: skip
    old_rank = load_lora(src).rank
    new_ranks = sorted({m.rank for m in modules})
    new = str(new_ranks[0]) if len(new_ranks) == 1 else f"dynamic ({new_ranks[0]}–{new_ranks[-1]})"
    retained, _ = stats_report(stats)
    comment = f"dimension is resized from {old_rank} to {new}; retained Frobenius share {retained:.4f}"
    old_comment = ds.metadata.get("ss_training_comment")
    if old_comment and old_comment != "None":
        comment += f"; {old_comment}"
    record = {"tool": "resize", "input": src.name, "hash": _short_hash(src), "rank": req.rank,
              "conv_rank": req.conv_rank, "method": req.method, "param": req.param, "comment": comment}  # fmt: skip
    keep = {k: v for k, v in ds.metadata.items() if k.startswith("ss_") and not k.startswith("sshs_")}
    keep["ss_training_comment"] = comment
    write_result(req, path, low_rank_tensors(modules, req.precision), ds.family, record, keep, modules)
    return _result("resize", path, modules, t0, device, stats, ds.notes)


# ------------------------------------------------------------------------------------------------ extract
def extract(req: ExtractRequest, device: str, step, t0: float) -> ToolResult:
    from loradeck.tools.checkpoints import load_weights

    if req.base is None or req.tuned is None:
        raise InvalidRequest("extract needs --base and --tuned checkpoints.")
    _rank_arg(req.rank, "--rank")
    if req.conv_rank < 0:
        raise InvalidRequest(f"--conv-rank must be 0 (no 3×3 convs) or more; got {req.conv_rank}.")
    step(0, 2, "loading the base model")
    base = load_weights(req.base)
    step(1, 2, "loading the tuned model")
    tuned = load_weights(req.tuned)
    if Family.UNKNOWN not in (base.family, tuned.family) and base.family != tuned.family:
        raise InvalidRequest(
            f"{Path(str(req.base)).name} is {base.family.label} but {Path(str(req.tuned)).name} is "
            f"{tuned.family.label}: a LoRA can only be extracted between two models of one family."
        )
    path = output_path(req, f"{tuned.name}-extracted-r{req.rank}")
    targets = dict(base.keymap.modules)
    if req.conv_rank > 0:
        targets |= base.keymap.conv_modules
    modules, stats, notes = [], [], []
    names = list(targets)
    for i, name in enumerate(names):
        w0, w1 = base.weight(name), tuned.weight(name)
        step(i, len(names), name)
        if w0 is None or w1 is None:
            continue
        if w0.shape != w1.shape:
            raise InvalidRequest(f"module {name} has shape {tuple(w0.shape)} in the base but {tuple(w1.shape)} tuned.")
        is_conv3 = w0.dim() == 4 and w0.shape[2] * w0.shape[3] > 1
        diff = max_abs_diff(w0, w1)
        te = not name.startswith("lora_unet_")
        if (te and diff <= req.min_diff) or diff == 0.0:
            why = f"max |ΔW| {diff:.2e} ≤ --min-diff {req.min_diff:g}" if te else "identical in both models"
            notes.append(f"{name}: skipped, {why}")
            continue
        m, s = extract_module(name, w0, w1, req.conv_rank if is_conv3 else req.rank, clamp=req.clamp_quantile,
                              device=device)  # fmt: skip
        modules.append(m)
        stats.append(s)
    step(len(names), len(names), "writing")
    if not modules:
        raise InvalidRequest("the two models do not differ in any LoRA module (above --min-diff): nothing to extract.")
    record = {
        "tool": "extract",
        "base": base.name,
        "tuned": tuned.name,
        "rank": req.rank,
        "conv_rank": req.conv_rank,
        "clamp_quantile": req.clamp_quantile,
        "min_diff": req.min_diff,
        "skipped": len(notes),
        "comment": f"extracted from {tuned.name} − {base.name} at rank {req.rank}",
    }
    extra = {"ss_sd_model_name": base.name}
    family = base.family if base.family is not Family.UNKNOWN else tuned.family
    write_result(req, path, low_rank_tensors(modules, req.precision), family, record, extra, modules)
    return _result("extract", path, modules, t0, device, stats, notes)


# ------------------------------------------------------------------------------------------------ convert
def convert(req: ConvertRequest, device: str, step, t0: float) -> ToolResult:
    if req.input is None:
        raise InvalidRequest("convert needs an input LoRA file.")
    if req.to not in convert_ops.TARGETS:
        raise InvalidRequest(f"--to must be one of {', '.join(convert_ops.TARGETS)}; got {req.to!r}.")
    src = Path(req.input)
    lora = load_lora(src)
    path = output_path(req, f"{src.stem}-{req.to}")
    dtype = SAVE_DTYPES[req.precision]
    record = {"tool": "convert", "input": src.name, "hash": _short_hash(src), "to": req.to,
              "comment": f"converted from {src.name} ({lora.layout} layout, {lora.format}) to {req.to}"}  # fmt: skip
    keep = {k: v for k, v in lora.metadata.items() if k.startswith(("ss_", "modelspec.")) and k != "sshs_model_hash"}
    step(0, 1, src.name)
    if req.to == "kohya":
        tensors, notes = convert_ops.kohya_renamed(lora, dtype)
        modules_n, rank = len(lora.modules), lora.rank
        write_result(req, path, tensors, lora.family, record, keep)
        step(1, 1, src.name)
        return _wrap(req, path, modules_n, rank, t0, device, notes)
    ds = read_input(src, _base_weights(req.base), device)
    from loradeck.lora.files.write import LowRankModule

    modules = [LowRankModule(d.name, d.shape, *d.lowrank()) for d in ds.modules.values()]
    if req.to == "peft":
        tensors = convert_ops.peft_tensors(modules, ds.family, dtype)
        write_result(req, path, tensors, ds.family, record, keep)  # no alpha keys: diffusers reads s = 1
    else:
        write_result(req, path, low_rank_tensors(modules, req.precision), ds.family, record, keep, modules)
    step(1, 1, src.name)
    return _result("convert", path, modules, t0, device, None, ds.notes)


def _wrap(req, path, n, rank, t0, device, notes) -> ToolResult:
    return ToolResult("convert", path, n, rank, time.perf_counter() - t0, device, None, [], list(notes))


__all__ = ["merge", "resize", "extract", "convert"]
