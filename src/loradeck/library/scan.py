"""Turning found files into index rows (the expensive part, done once per file version) and rows into entries."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from loradeck.errors import FormatError
from loradeck.families import Family
from loradeck.formats.hashes import FileHashes, autov1_file, embedded_model_hash
from loradeck.formats.safetensors_io import read_header
from loradeck.formats.sidecars import read_sidecars
from loradeck.library.detect import (
    Summary,
    decode_metadata,
    summarize_checkpoint,
    summarize_diffusers_dir,
    summarize_lora,
    summarize_pickle_lora,
)
from loradeck.library.entries import CheckpointEntry, Hashes, LoraEntry
from loradeck.library.index import Row
from loradeck.library.triggers import choose_trigger_words
from loradeck.library.walk import Found
from loradeck.lora.validate import check_header
from loradeck.text import one_line

HashFn = Callable[[Path], FileHashes]


def _why(path: Path, e: Exception) -> str:
    """One line naming the file, whatever the exception (the scan must survive any file: see docs/reliability.md)."""
    if isinstance(e, FormatError):
        text = str(e)
    elif isinstance(e, OSError):
        text = f"{path}: cannot be read ({e.strerror or e})"
    elif isinstance(e, RecursionError):
        text = f"{path}: is nested too deeply to be read"
    else:
        text = f"{path}: cannot be read ({type(e).__name__}: {e})"
    return one_line(text)


def lora_row(found: Found, root: Path, hash_fn: HashFn) -> Row:
    """Read the header (safetensors) and hash the file once; any failure becomes the row's ``error``."""
    path, st = found.path, found.stat
    base = Row(str(path), str(root), "lora", st.st_size, st.st_mtime_ns)
    try:
        metadata, summary = {}, Summary(format="pickle")
        if path.suffix.lower() == ".safetensors":
            header = read_header(path)
            check_header(path, header)  # a file the engine would refuse is listed as unreadable, with why
            metadata, summary = header.metadata, summarize_lora(header, path)
        else:
            summary = summarize_pickle_lora(path) or summary
        hashes = hash_fn(path)
    except Exception as e:  # any file: a hostile one must not stop the scan
        return replace(base, error=_why(path, e))
    return replace(
        base,
        sha256=hashes.sha256,
        autov1=hashes.autov1,
        tensor_sha256=hashes.tensor_sha256,
        metadata=json.dumps(metadata, ensure_ascii=False),
        summary=summary.to_json(),
    )


def checkpoint_row(found: Found, root: Path) -> Row:
    """Header summary and the cheap AutoV1 only; the full sha256 is left for later (see Library.checkpoint_sha256)."""
    path, st = found.path, found.stat
    base = Row(str(path), str(root), "checkpoint", st.st_size, st.st_mtime_ns)
    try:
        metadata, autov1 = {}, None
        if found.is_dir:
            summary = summarize_diffusers_dir(path)
        elif path.suffix.lower() == ".safetensors":
            header = read_header(path)
            metadata, summary = header.metadata, summarize_checkpoint(header)
            autov1 = autov1_file(path)
        else:
            summary, autov1 = Summary(format="ckpt"), autov1_file(path)
    except Exception as e:  # any file: a hostile one must not stop the scan
        return replace(base, error=_why(path, e))
    return replace(base, autov1=autov1, metadata=json.dumps(metadata, ensure_ascii=False), summary=summary.to_json())


def _relative(path: Path, root: Path) -> tuple[str, str]:
    """(posix path relative to ``root``, its folder or ""). String work: pathlib here costs more than the scan."""
    full, top = path.as_posix(), root.as_posix().rstrip("/") + "/"
    rel = full[len(top) :] if full.startswith(top) else path.name
    return rel, rel.rpartition("/")[0]


def lora_entry(row: Row, found: Found, root: Path) -> LoraEntry:
    """Combine the cached row with the sidecars, which are re-read every scan (users edit them)."""
    path = found.path
    _, subfolder = _relative(path, root)
    raw = json.loads(row.metadata or "{}")
    metadata = decode_metadata(raw)
    summary = Summary.from_json(row.summary)
    side = read_sidecars(path, found.siblings)
    warnings = list(side.errors)
    family = (
        (side.user.family if side.user else None)
        or (summary.family if summary.family is not Family.UNKNOWN else None)
        or (side.civitai.family if side.civitai else None)
        or Family.UNKNOWN
    )
    words, source = choose_trigger_words(
        side.user.activation_text if side.user else None,
        side.civitai.trained_words if side.civitai else None,
        metadata,
    )
    embedded = embedded_model_hash(raw)
    if embedded and row.tensor_sha256 and embedded != row.tensor_sha256:
        warnings.append(
            f"{path}: the embedded sshs_model_hash {embedded[:12]} does not match the tensor data "
            f"({row.tensor_sha256[:12]}); A1111 would write the stale one in Lora hashes."
        )
    return LoraEntry(
        name=path.stem,
        alias=raw.get("ss_output_name") or path.stem,
        path=path,
        subfolder=subfolder,
        size=row.size,
        mtime=row.mtime_ns / 1e9,
        family=family,
        format=summary.format,
        rank=summary.rank,
        alpha=summary.alpha,
        module_count=summary.module_count,
        hashes=Hashes(row.sha256, row.autov1, row.tensor_sha256),
        metadata=metadata,
        user=side.user,
        civitai=side.civitai,
        preview=side.preview,
        description=side.description,
        trigger_words=words,
        trigger_source=source,
        warnings=warnings,
    )


def checkpoint_entry(row: Row, found: Found, root: Path) -> CheckpointEntry:
    path = found.path
    rel, subfolder = _relative(path, root)
    summary = Summary.from_json(row.summary)
    side = read_sidecars(path, found.siblings)
    family = (side.user.family if side.user else None) or summary.family
    return CheckpointEntry(
        name=rel,
        model_name=(rel if found.is_dir else rel[: len(rel) - len(path.suffix)]).replace("/", "_"),
        stem=path.name if found.is_dir else path.stem,
        path=path,
        subfolder=subfolder,
        size=row.size,
        mtime=row.mtime_ns / 1e9,
        family=family,
        format="diffusers" if found.is_dir else ("safetensors" if path.suffix.lower() == ".safetensors" else "ckpt"),
        hashes=Hashes(row.sha256, row.autov1, row.tensor_sha256),
        metadata=decode_metadata(json.loads(row.metadata or "{}")),
        user=side.user,
        preview=side.preview,
        civitai=side.civitai,
    )
