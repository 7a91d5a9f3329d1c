"""Verified, resumable downloads from Civitai into the LoRA or checkpoint folder.

The file is streamed to ``<target>.part`` beside the target (same filesystem, so the final rename is atomic),
hashed as it arrives, checked against Civitai's size and SHA256, and only then renamed to its real name. What a
failure leaves behind:

- connection drop (after the bounded retries) or an interruption: the ``.part`` stays, and the next call resumes it
  with ``Range`` (a server that ignores the range answers 200 and we start over);
- a size or hash mismatch: the ``.part`` is deleted; the next try downloads again from zero;
- an HTTP error, a login page or an HTML body: nothing is written (the body is inspected before the first byte
  goes to disk).
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from loradeck.civitai.api import CivitaiClient, Resolved
from loradeck.civitai.errors import (
    CivitaiError,
    ConnectionDropped,
    EarlyAccess,
    HashMismatch,
    NoSuchFile,
    NotAModelFile,
    SizeMismatch,
    TargetExists,
    UnsupportedType,
)
from loradeck.civitai.records import CHECKPOINT_TYPES, LORA_TYPES, ModelFile, ModelVersion
from loradeck.civitai.sidecars import write_civitai_sidecars
from loradeck.formats.hashes import FileHashes, StreamHasher, hash_file

ProgressFn = Callable[[int, "int | None"], None]  # on_progress(done_bytes, total_bytes or None when unknown)

CHUNK = 1 << 20
SIZE_TOLERANCE = 1024  # Civitai lists sizes as float KiB; a rounding error stays under 1 KiB
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_HTML_STARTS = (b"<!doctype", b"<html", b"<head", b"<body", b"<?xml", b"<!--")


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    version: ModelVersion
    file: ModelFile
    sha256: str  # lower-case hex of the bytes on disk
    size: int
    verified: bool  # checked against Civitai's SHA256 (False only when Civitai listed none)
    resumed_from: int  # bytes already in the .part when this call started
    already_present: bool  # the target was there with the right hash; nothing was downloaded
    sidecars: tuple[Path, ...] = ()
    warnings: tuple[str, ...] = field(default=())


def install_folder(model_type: str | None, *, lora_dir: Path, checkpoint_dir: Path) -> Path | None:
    """Where a Civitai model type belongs: LORA/LoCon/DoRA → LoRA folder, Checkpoint → checkpoint folder."""
    if model_type in LORA_TYPES:
        return Path(lora_dir)
    if model_type in CHECKPOINT_TYPES:
        return Path(checkpoint_dir)
    return None


def safe_filename(name: str, fallback: str) -> str:
    """Civitai's file name made safe to join to a folder: no directories, no control characters, no leading dots."""
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable() and c not in '<>:"|?*').strip().lstrip(".")
    return name if name and name not in (".", "..") else fallback


def download(
    client: CivitaiClient,
    ref: str | Resolved,
    *,
    lora_dir: Path,
    checkpoint_dir: Path,
    to: Path | None = None,
    version_id: int | None = None,
    file_id: int | None = None,
    nsfw: bool = False,
    on_progress: ProgressFn | None = None,
    overwrite: bool = False,
    sidecars: bool = True,
    retries: int = 5,
) -> DownloadResult:
    """Resolve ``ref`` (URL, model id, version id, AIR or a ``Resolved``), download its file into ``to`` or the folder
    its type belongs in, verify it, install it atomically and write the sidecars."""
    target = ref if isinstance(ref, Resolved) else client.resolve(ref, version_id=version_id, file_id=file_id)
    folder = Path(to) if to is not None else None
    if folder is None:
        folder = install_folder(target.version.model_type, lora_dir=lora_dir, checkpoint_dir=checkpoint_dir)
        if folder is None:
            raise UnsupportedType(target.version.subject, target.version.model_type or "model of unknown type")
    result = download_file(
        client, target.version, target.file, folder, on_progress=on_progress, overwrite=overwrite, retries=retries
    )
    if not sidecars:
        return result
    description = _model_description(client, target)
    written = write_civitai_sidecars(
        client, result.path, target.version, sha256=result.sha256, nsfw=nsfw, model_description=description
    )
    return replace(result, sidecars=tuple(written.written), warnings=tuple(written.warnings))


def _model_description(client: CivitaiClient, target: Resolved) -> str | None:
    """The model's description for ``name.json`` when the version has none (one extra GET, never fatal)."""
    if target.model is not None or target.version.description or target.version.model_id is None:
        return target.model.description if target.model else None
    try:
        return client.model(target.version.model_id).description
    except CivitaiError:
        return None


def download_file(
    client: CivitaiClient,
    version: ModelVersion,
    file: ModelFile,
    folder: Path,
    *,
    on_progress: ProgressFn | None = None,
    overwrite: bool = False,
    retries: int = 5,
) -> DownloadResult:
    """Download one file of a version into ``folder`` (no sidecars): ``.part`` + resume, verify, atomic rename."""
    url = file.download_url or version.download_url
    if not url:
        raise NoSuchFile(version.subject, file.id)
    subject = version.subject
    folder.mkdir(parents=True, exist_ok=True)
    fallback = f"civitai_{version.id}_{file.id}.safetensors"
    path = folder / safe_filename(file.name, fallback)
    expected = file.sha256
    if path.exists():
        present = hash_file(path)
        if expected and present.sha256 == expected.lower():
            return DownloadResult(path, version, file, present.sha256, present.size, True, 0, True)
        if not overwrite:
            raise TargetExists(subject, path)
    part = path.with_name(path.name + ".part")
    resumed_from = part.stat().st_size if part.exists() else 0
    try:
        hashes = _transfer(client, url, part, subject, file.size_bytes, on_progress, retries)
    except EarlyAccess as exc:
        if exc.deadline is None and version.early_access_ends is not None:
            raise EarlyAccess(subject, version.early_access_ends) from None  # the record knows the deadline
        raise
    except OSError as exc:
        raise CivitaiError(
            f"Could not write {part} while downloading {subject} ({exc.strerror or exc}); "
            "free some space or choose another folder, then run the download again to resume.",
            subject=subject,
        ) from exc
    _verify(part, hashes, file, subject)
    os.replace(part, path)  # same folder, so atomic: the model appears whole or not at all
    return DownloadResult(path, version, file, hashes.sha256, hashes.size, expected is not None, resumed_from, False)


def _verify(part: Path, got: FileHashes, file: ModelFile, subject: str) -> None:
    """Size first (the clearer sentence), then SHA256 (or AutoV2 when that is all Civitai lists). Deletes on failure."""
    size = file.size_bytes
    if size is not None and abs(got.size - size) > SIZE_TOLERANCE:
        part.unlink(missing_ok=True)
        raise SizeMismatch(subject, got.size, size)
    expected = file.sha256
    if expected is None:
        autov2 = file.hash("AutoV2")
        if autov2 and len(autov2) == 10 and got.autov2 != autov2.lower():
            part.unlink(missing_ok=True)
            raise HashMismatch(subject, got.sha256.upper(), autov2)
        return
    if got.sha256 != expected.lower():
        part.unlink(missing_ok=True)
        raise HashMismatch(subject, got.sha256.upper(), expected)


def _hash_existing(part: Path, hasher: StreamHasher) -> int:
    """Feed the bytes already in the ``.part`` to the hasher, so a resumed file is still hashed in one pass."""
    if not part.exists():
        return 0
    done = 0
    with part.open("rb") as f:
        while chunk := f.read(CHUNK):
            hasher.update(chunk)
            done += len(chunk)
    return done


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """``(start, total)`` from ``Content-Range: bytes START-END/TOTAL``; None if absent or garbled."""
    m = _CONTENT_RANGE.match(value or "")
    if not m:
        return None
    return int(m.group(1)), None if m.group(3) == "*" else int(m.group(3))


def _refuse_non_model(resp: httpx.Response, first: bytes | None, subject: str, total: int | None) -> None:
    """A login page or an error message served with 200 must never be saved as a model.

    Model files start with binary (an 8-byte safetensors length, a zip or GGUF magic), so text markup at byte 0 is
    safe to call HTML; JSON is only called JSON when the whole small body parses, because a safetensors length byte
    can happen to be ``{``."""
    ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
    head = (first or b"")[:64].lstrip().lower()
    if ctype in ("text/html", "application/xhtml+xml") or head.startswith(_HTML_STARTS):
        raise NotAModelFile(subject, "an HTML page")
    if ctype == "application/json":
        raise NotAModelFile(subject, "a JSON message")
    if first and head[:1] in (b"{", b"[") and (total is None or total == len(first)) and len(first) < 65536:
        try:
            json.loads(first)
        except ValueError:
            return
        raise NotAModelFile(subject, "a JSON message")


class _Restart(Exception):
    """The server will not continue the .part (ignored Range, wrong offset, 416 with another size)."""


def _transfer(
    client: CivitaiClient,
    url: str,
    part: Path,
    subject: str,
    listed_size: int | None,
    on_progress: ProgressFn | None,
    retries: int,
) -> FileHashes:
    """Fill ``part`` until the server says the file is complete; returns the hashes of all its bytes."""
    hasher = StreamHasher()
    done = _hash_existing(part, hasher)
    if listed_size is not None and done > listed_size + SIZE_TOLERANCE:
        part.unlink()  # longer than the real file: not a prefix of it
        hasher, done = StreamHasher(), 0
    drops = 0
    total: int | None = None
    while True:
        try:
            total = _one_request(client, url, part, subject, hasher, done, listed_size, on_progress)
            return hasher.result()
        except _Restart:
            part.unlink(missing_ok=True)
            hasher, done = StreamHasher(), 0
        except _Dropped as drop:
            done, total = drop.done, drop.total
        drops += 1
        if drops > retries:
            raise ConnectionDropped(subject, part, done, total, drops)
        client.sleep(client.wait_time(drops - 1, None))


class _Dropped(Exception):
    def __init__(self, done: int, total: int | None):
        self.done, self.total = done, total


def _one_request(
    client: CivitaiClient,
    url: str,
    part: Path,
    subject: str,
    hasher: StreamHasher,
    done: int,
    listed_size: int | None,
    on_progress: ProgressFn | None,
) -> int | None:
    headers = {"Accept-Encoding": "identity"}
    if done:
        headers["Range"] = f"bytes={done}-"
    resp = client.send("GET", url, subject, headers=headers, stream=True, passthrough=frozenset({416}))
    try:
        if resp.status_code == 416:
            span = _content_range(resp.headers.get("Content-Range", "").replace("bytes */", "bytes 0-0/"))
            if done and span and span[1] == done:
                return done  # the .part already holds the whole file
            raise _Restart
        if resp.status_code == 206:
            span = _content_range(resp.headers.get("Content-Range"))
            if not done or span is None or span[0] != done:
                raise _Restart
            total = span[1]
        else:
            if done:
                raise _Restart  # 200 to a Range request: the server sends the whole file again
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        return _stream_body(resp, part, subject, hasher, done, total, listed_size, on_progress)
    finally:
        resp.close()


def _stream_body(
    resp: httpx.Response,
    part: Path,
    subject: str,
    hasher: StreamHasher,
    done: int,
    total: int | None,
    listed_size: int | None,
    on_progress: ProgressFn | None,
) -> int | None:
    chunks = resp.iter_bytes()
    out = None
    try:
        first = next(chunks, b"")
        # Look at the body before the size: a login page is a login page, whatever its length.
        _refuse_non_model(resp, first if done == 0 else None, subject, total)
        if total is not None and listed_size is not None and abs(total - listed_size) > SIZE_TOLERANCE:
            part.unlink(missing_ok=True)  # the server has another file: resuming it makes no sense
            raise SizeMismatch(subject, total, listed_size)
        if on_progress:
            on_progress(done, total)
        out = part.open("ab")
        for chunk in _chain(first, chunks):
            out.write(chunk)
            hasher.update(chunk)
            done += len(chunk)
            if on_progress:
                on_progress(done, total)
    except (httpx.TransportError, httpx.StreamError):
        raise _Dropped(done, total) from None
    finally:
        if out is not None:
            out.flush()
            os.fsync(out.fileno())
            out.close()
    if total is not None and done < total:
        raise _Dropped(done, total)  # the server ended the body early without an error
    return total


def _chain(first: bytes, rest):
    if first:
        yield first
    yield from rest
