"""Model file hashes as A1111 and Civitai compute them, all from ONE streamed pass over the file.

| name    | definition                                                        | used for                           |
|---------|-------------------------------------------------------------------|------------------------------------|
| sha256  | SHA-256 of the whole file (64 hex)                                 | Civitai by-hash, download checks   |
| AutoV2  | sha256[:10]                                                       | `Model hash:` in infotext          |
| AutoV1  | SHA-256 of the 64 KiB at offset 1 MiB, 8 hex (legacy)              | old `Model hash:`, checkpoint alias |
| AutoV3  | SHA-256 of the tensor data after a safetensors header (addnet hash) | `Lora hashes:` (12 hex), Civitai   |
| CRC32   | zlib CRC-32 written little-endian (Civitai's byte order), optional | Civitai file listing only          |

BLAKE3 is not computed: the stdlib has no BLAKE3 and Civitai's lookups accept sha256/AutoV1/AutoV2/AutoV3.

Hex strings are lower-case here; Civitai prints upper-case, so compare with ``.lower()``.
:class:`StreamHasher` takes the bytes in order (from a file, or from a download as it arrives) and keeps every
hash up to date at once, so a file is read once whatever we need from it.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20  # 1 MiB reads: big enough for hashlib to release the GIL, small enough to stay cache-friendly
AUTOV1_OFFSET, AUTOV1_LENGTH = 0x100000, 0x10000
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()  # e3b0c442…: what a bogus trainer writes, never a real model
_INVALID_PREFIX = EMPTY_SHA256[:12]  # "e3b0c44298fc"


@dataclass(frozen=True)
class FileHashes:
    """Every hash of one file. ``tensor_sha256`` is None when the bytes are not a safetensors layout."""

    size: int
    sha256: str
    autov1: str | None  # None when the 64 KiB window at 1 MiB is empty (file ≤ 1 MiB)
    tensor_sha256: str | None  # full 64-hex AutoV3 / addnet hash (= a correct kohya ``sshs_model_hash``)
    crc32: str | None = None  # 8 hex, Civitai byte order; only when asked for

    @property
    def autov2(self) -> str:
        return self.sha256[:10]

    @property
    def autov3(self) -> str | None:
        """The 12-hex short AutoV3 that A1111 writes in ``Lora hashes`` and Civitai matches exactly."""
        return self.tensor_sha256[:12] if self.tensor_sha256 else None

    def lora_hash(self) -> str:
        """The 12 hex A1111 puts in ``Lora hashes``: AutoV3 for safetensors, the full-file sha256 otherwise."""
        return self.autov3 or self.sha256[:12]


class StreamHasher:
    """Feed a file's bytes in order with :meth:`update`; :meth:`result` gives all hashes.

    The AutoV3 hash needs the header length from bytes 0..7, and AutoV1 a window at 1 MiB; both are cut out of the
    same chunks as they pass, so no byte is read twice and nothing is buffered beyond the current chunk.
    """

    def __init__(self, *, tensor_hash: bool = True, crc32: bool = False):
        self._sha = hashlib.sha256()
        self._v1 = hashlib.sha256()
        self._v1_seen = 0
        self._tensor = hashlib.sha256() if tensor_hash else None
        self._data_start: int | None = None  # 8 + header length, once the first 8 bytes are known
        self._prefix = b""  # the first (up to) 8 bytes, to read the header length across chunk borders
        self._crc: int | None = 0 if crc32 else None
        self._offset = 0

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        view = memoryview(chunk)
        start, end = self._offset, self._offset + len(view)
        self._sha.update(view)
        if self._crc is not None:
            self._crc = zlib.crc32(view, self._crc)
        self._update_autov1(view, start, end)
        if self._tensor is not None:
            self._update_tensor(view, start, end)
        self._offset = end

    def _update_autov1(self, view: memoryview, start: int, end: int) -> None:
        lo, hi = max(start, AUTOV1_OFFSET), min(end, AUTOV1_OFFSET + AUTOV1_LENGTH)
        if lo < hi:
            self._v1.update(view[lo - start : hi - start])
            self._v1_seen += hi - lo

    def _update_tensor(self, view: memoryview, start: int, end: int) -> None:
        if self._data_start is None:
            need = 8 - len(self._prefix)
            self._prefix += bytes(view[:need])
            if len(self._prefix) < 8:
                return
            self._data_start = 8 + struct.unpack("<Q", self._prefix)[0]
        lo = max(start, self._data_start)
        if lo < end and self._tensor is not None:
            self._tensor.update(view[lo - start :])

    def result(self) -> FileHashes:
        size = self._offset
        tensor = None
        # A header length that points past the end means the bytes are not safetensors (e.g. a zip .ckpt).
        if self._tensor is not None and self._data_start is not None and self._data_start <= size:
            tensor = self._tensor.hexdigest()
        crc = struct.pack("<I", self._crc).hex() if self._crc is not None else None
        return FileHashes(
            size=size,
            sha256=self._sha.hexdigest(),
            autov1=self._v1.hexdigest()[:8] if self._v1_seen else None,
            tensor_sha256=tensor,
            crc32=crc,
        )


def hash_file(
    path: str | os.PathLike,
    *,
    tensor_hash: bool | None = None,
    crc32: bool = False,
    on_bytes: Callable[[int, int], None] | None = None,
) -> FileHashes:
    """Stream ``path`` once (1 MiB at a time) and return all its hashes.

    ``tensor_hash`` defaults to "the file ends in .safetensors": A1111 uses the full sha256 for pickled LoRAs, so an
    AutoV3 of a .ckpt would be meaningless. ``on_bytes(done, total)`` reports progress for big checkpoints.
    """
    path = Path(path)
    if tensor_hash is None:
        tensor_hash = path.suffix.lower() == ".safetensors"
    hasher = StreamHasher(tensor_hash=tensor_hash, crc32=crc32)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with path.open("rb", buffering=0) as f:
        total = os.fstat(f.fileno()).st_size
        while n := f.readinto(buf):
            hasher.update(view[:n])
            if on_bytes is not None:
                on_bytes(hasher._offset, total)
    return hasher.result()


def sha256_file(path: str | os.PathLike) -> str:
    """Full-file SHA-256 (64 hex), streamed."""
    return hash_file(path, tensor_hash=False).sha256


def autov1_file(path: str | os.PathLike) -> str | None:
    """Legacy A1111 ``model_hash()``: reads only the 64 KiB window, so it is cheap even for a 7 GB checkpoint."""
    with Path(path).open("rb") as f:
        f.seek(AUTOV1_OFFSET)
        window = f.read(AUTOV1_LENGTH)
    return hashlib.sha256(window).hexdigest()[:8] if window else None


def tensor_sha256_file(path: str | os.PathLike) -> str | None:
    """AutoV3 / addnet hash (64 hex) of a safetensors file, reading only the tensor data; None if not safetensors."""
    with Path(path).open("rb", buffering=0) as f:
        total = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            return None
        start = 8 + struct.unpack("<Q", head)[0]
        if start > total:
            return None
        f.seek(start)
        sha = hashlib.sha256()
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            sha.update(view[:n])
    return sha.hexdigest()


def valid_hash(value: str | None) -> str | None:
    """A hash string from metadata or a sidecar, lower-cased with any ``0x`` stripped, or None when it is unusable.

    Rejects the sha256 of empty input (``e3b0c44298fc…``), which some trainers write instead of a real hash.
    """
    if not value:
        return None
    v = value.strip().lower().removeprefix("0x")
    if not v or any(c not in "0123456789abcdef" for c in v) or v.startswith(_INVALID_PREFIX[: len(v)]):
        return None
    return v


def embedded_model_hash(metadata: dict[str, str]) -> str | None:
    """The kohya ``sshs_model_hash`` (meant to equal the AutoV3 source), if present and plausible."""
    return valid_hash(metadata.get("sshs_model_hash"))
