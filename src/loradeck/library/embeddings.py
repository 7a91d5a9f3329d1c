"""The textual-inversion embeddings folder(s): scanned like A1111's ``EmbeddingDatabase``, one entry per file.

Where: ``<home>/models/embeddings`` and, when set, ``Settings.embeddings_dir`` (an A1111 ``embeddings/`` folder;
``--embeddings-dir``), that folder first: when two files share a name, the first one found is used and the other is
listed with a note. Files are ``.safetensors``, ``.pt`` and ``.bin`` (pickles through ``weights_only`` only), walked
as A1111 walks them (recursive, hidden folders skipped, natural order); empty files are skipped, as in A1111.

Embeddings are small (a few KB to 600 KB), so a scan reads every new or changed file whole — vectors and a full-file
sha256 (A1111's ``TI hashes`` value is its first 12 hex) — and keeps the result by (path, size, mtime); an unchanged
file costs one ``stat``. A file that cannot be read becomes one ``ScanError`` sentence and the scan goes on.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loradeck.errors import FormatError
from loradeck.families import Family
from loradeck.formats.embeddings import EMBEDDING_EXTS, Embedding, read_embedding
from loradeck.formats.hashes import sha256_file
from loradeck.formats.sidecars import find_preview
from loradeck.library.entries import ScanError
from loradeck.library.walk import Found, walk_models
from loradeck.text import one_line


@dataclass
class EmbeddingEntry:
    name: str  # file stem: what a prompt names (A1111)
    path: Path
    subfolder: str  # posix path of the folder relative to its root, "" at top level
    size: int
    mtime: float
    sha256: str
    embedding: Embedding = field(repr=False)
    preview: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def family(self) -> Family:
        return self.embedding.family

    @property
    def vectors(self) -> int:
        return self.embedding.vectors

    @property
    def shape(self) -> int:
        return self.embedding.shape

    @property
    def short_hash(self) -> str:
        """The 12 hex A1111 writes in ``TI hashes`` (``Embedding.shorthash``: the file's sha256)."""
        return self.sha256[:12]

    @property
    def qualified_name(self) -> str:
        return f"{self.subfolder}/{self.name}" if self.subfolder else self.name

    def to_dict(self) -> dict[str, Any]:
        e = self.embedding
        return {
            "name": self.name,
            "qualified_name": self.qualified_name,
            "path": str(self.path),
            "subfolder": self.subfolder,
            "size": self.size,
            "mtime": self.mtime,
            "family": self.family.value,
            "shape": self.shape,
            "vectors": self.vectors,
            "step": e.step,
            "sd_checkpoint": e.sd_checkpoint,
            "sd_checkpoint_name": e.sd_checkpoint_name,
            "sha256": self.sha256,
            "hash": self.short_hash,
            "preview": str(self.preview) if self.preview else None,
            "notes": list(self.notes),
        }


class EmbeddingLibrary:
    """Every embedding under ``roots`` (the first root's file wins a name), rescanned cheaply on each call."""

    def __init__(self, roots: Sequence[Path]):
        self.roots = list(dict.fromkeys(Path(r) for r in roots))
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[int, int, EmbeddingEntry | str]] = {}  # path → (size, mtime_ns, entry/error)
        self._entries: list[EmbeddingEntry] = []
        self._errors: list[ScanError] = []

    def scan(self) -> list[EmbeddingEntry]:
        """Walk the folders, read new or changed files, forget vanished ones; returns the entries."""
        with self._lock:
            entries: dict[str, EmbeddingEntry] = {}
            errors: list[ScanError] = []
            seen: set[str] = set()
            for root in self.roots:
                found = walk_models(root, EMBEDDING_EXTS) if root.is_dir() else []
                for f in found:
                    if f.stat.st_size == 0:  # A1111 skips empty files without a word
                        continue
                    seen.add(str(f.path))
                    result = self._read(f, root)
                    if isinstance(result, str):
                        errors.append(ScanError(f.path, "embedding", result))
                        continue
                    first = entries.get(result.name)
                    if first is not None:
                        first.notes.append(f"{result.path} has the same name and is not used.")
                        continue
                    result.notes = []  # notes are about this scan only (the entry object is cached)
                    entries[result.name] = result
            self._cache = {k: v for k, v in self._cache.items() if k in seen}
            self._entries = sorted(entries.values(), key=lambda e: e.name.lower())  # A1111 sorts by name
            self._errors = errors
            return list(self._entries)

    refresh = scan

    def entries(self) -> list[EmbeddingEntry]:
        """The entries, after a rescan (cheap: unchanged files are only stat-ed)."""
        return self.scan()

    def errors(self) -> list[ScanError]:
        with self._lock:
            return list(self._errors)

    def _read(self, found: Found, root: Path) -> EmbeddingEntry | str:
        key = str(found.path)
        st = found.stat
        cached = self._cache.get(key)
        if cached is not None and cached[:2] == (st.st_size, st.st_mtime_ns):
            return cached[2]
        result: EmbeddingEntry | str
        try:
            embedding = read_embedding(found.path)
            rel = found.path.relative_to(root).as_posix() if found.path.is_relative_to(root) else found.path.name
            result = EmbeddingEntry(
                name=found.path.stem,
                path=found.path,
                subfolder=rel.rpartition("/")[0],
                size=st.st_size,
                mtime=st.st_mtime_ns / 1e9,
                sha256=sha256_file(found.path),
                embedding=embedding,
                preview=find_preview(found.path, found.siblings),
            )
        except FormatError as e:
            result = one_line(str(e))
        except Exception as e:  # any file: a hostile one must not stop the scan
            result = one_line(f"{found.path}: cannot be read ({type(e).__name__}: {e})")
        self._cache[key] = (st.st_size, st.st_mtime_ns, result)
        return result
