"""The library's memory between runs: one sqlite file, one row per model file, keyed by (path, size, mtime).

A row holds what is expensive to learn — hashes (a full read of the file) and the header summary — so a rescan of an
unchanged folder only stats files. A row whose size or mtime differs from the file on disk is simply recomputed.
Read errors are stored too, so a broken file is not re-read on every scan until it changes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass, fields
from pathlib import Path

SCHEMA_VERSION = 2  # 2: rows are written after lora.validate.check_header; older rows may hide invalid files
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    root TEXT NOT NULL,
    kind TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT,
    autov1 TEXT,
    tensor_sha256 TEXT,
    metadata TEXT,
    summary TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS files_root ON files (root, kind);
"""


@dataclass(frozen=True)
class Row:
    path: str
    root: str
    kind: str  # "lora" | "checkpoint"
    size: int
    mtime_ns: int
    sha256: str | None = None
    autov1: str | None = None
    tensor_sha256: str | None = None
    metadata: str | None = None  # the safetensors __metadata__ map as JSON text
    summary: str | None = None  # detect.Summary as JSON text
    error: str | None = None  # one sentence when the file could not be read

    def is_current(self, size: int, mtime_ns: int) -> bool:
        return self.size == size and self.mtime_ns == mtime_ns


_COLUMNS = ", ".join(f.name for f in fields(Row))
_PLACEHOLDERS = ", ".join("?" for _ in fields(Row))


class LibraryIndex:
    """sqlite index at ``path``. One connection, kept open (closing a WAL database checkpoints and fsyncs, which
    cost more than a whole rescan), shared by threads under a lock; other processes share the file through sqlite."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self.warning: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._init()
        except (OSError, sqlite3.OperationalError) as e:
            # A read-only or broken cache folder must not stop the library: keep the index in memory for this run.
            self.warning = f"{self.path}: cannot be used as the library index ({e}); hashes will not be kept."
            self.close()
            self.path = Path(":memory:")
            self._init()
        except sqlite3.DatabaseError:
            # Not a database (or an incompatible one): it is only a cache, so start over.
            self.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            self._init()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        # A cache, not a ledger: no fsync per commit (WAL + NORMAL stays consistent; a crash loses at most the last
        # rows, which the next scan recomputes).
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _init(self) -> None:
        with self._lock:
            if self._db is None:
                self._db = self._open()
            db = self._db
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                db.execute("DROP TABLE IF EXISTS files")
            db.executescript(_SCHEMA)  # autocommit mode: each statement commits by itself
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """The shared connection inside one transaction: committed on success, rolled back on error."""
        with self._lock:
            if self._db is None:
                self._db = self._open()
            db = self._db
            db.execute("BEGIN")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def rows(self, root: str, kind: str) -> dict[str, Row]:
        with self._connect() as db:
            cur = db.execute(f"SELECT {_COLUMNS} FROM files WHERE root = ? AND kind = ?", (root, kind))
            return {r[0]: Row(*r) for r in cur}

    def get(self, path: str) -> Row | None:
        with self._connect() as db:
            r = db.execute(f"SELECT {_COLUMNS} FROM files WHERE path = ?", (path,)).fetchone()
        return Row(*r) if r else None

    def put(self, rows: Iterable[Row]) -> None:
        with self._connect() as db:
            db.executemany(f"INSERT OR REPLACE INTO files ({_COLUMNS}) VALUES ({_PLACEHOLDERS})", map(astuple, rows))

    def prune(self, root: str, kind: str, keep: set[str]) -> int:
        """Forget rows of ``root``/``kind`` whose file was not seen in the last scan; returns how many."""
        with self._connect() as db:
            stale = [p for (p,) in db.execute("SELECT path FROM files WHERE root = ? AND kind = ?", (root, kind))]
            gone = [(p,) for p in stale if p not in keep]
            db.executemany("DELETE FROM files WHERE path = ?", gone)
        return len(gone)
