"""The LoRA and checkpoint library: scan, index, resolve names as A1111 does (plus ``subfolder/name``)."""

from __future__ import annotations

import difflib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from loradeck.errors import CheckpointNotFound, LoraNotFound, ModelLoadError
from loradeck.formats.hashes import hash_file, valid_hash
from loradeck.library.entries import CheckpointEntry, LoraEntry, ScanError
from loradeck.library.index import LibraryIndex
from loradeck.library.names import LoraNames
from loradeck.library.scan import HashFn, checkpoint_entry, checkpoint_row, lora_entry, lora_row
from loradeck.library.walk import CHECKPOINT_EXTS, LORA_EXTS, Found, walk_models
from loradeck.settings import Settings
from loradeck.text import one_line

ProgressFn = Callable[[int, int, Path], None]
_BATCH = 64  # rows written per transaction during a first scan, so an interrupted scan keeps its work


@dataclass(frozen=True)
class ScanReport:
    loras: int
    checkpoints: int
    hashed: int  # files read in full this scan (new or changed)
    reused: int  # files whose index row was still current
    errors: list[ScanError] = field(default_factory=list)
    seconds: float = 0.0


def _default_hash(path: Path):
    return hash_file(path)


class Library:
    """All LoRAs under ``lora_dir`` and base models under ``checkpoint_dir``, indexed in ``cache_dir/library.sqlite``.

    The first call to :meth:`loras`/:meth:`checkpoints`/``resolve_*`` scans; :meth:`refresh` rescans (cheap: unchanged
    files are only stat-ed). LoRAs are hashed fully at scan time (sha256, AutoV1, AutoV3 in one streamed pass).

    Checkpoint sha256 is lazy: a 7 GB file takes seconds to hash, so a scan computes only AutoV1 (64 KiB read) and the
    header summary. :meth:`checkpoint_sha256` streams the file once when a caller first needs the hash (loading the
    model, writing ``Model hash``), stores it in the index under (path, size, mtime), and every later scan reuses it
    until the file changes; :meth:`hash_checkpoints` fills in all missing ones up front (e.g. ``loradeck models hash``).
    Thread-safe: one lock guards scans and the name tables.
    """

    def __init__(
        self,
        lora_dir: Path,
        checkpoint_dir: Path,
        cache_dir: Path,
        *,
        hash_fn: HashFn | None = None,
        extra_lora_dirs: Sequence[Path] = (),
    ):
        self.lora_dir = Path(lora_dir)
        # Read-only LoRA folders scanned before lora_dir (the bundled demo LoRAs): a user's file of the same name wins.
        self.lora_roots = [Path(d) for d in extra_lora_dirs if Path(d) != self.lora_dir] + [self.lora_dir]
        self.checkpoint_dir = Path(checkpoint_dir)
        self.index = LibraryIndex(Path(cache_dir) / "library.sqlite")
        self._hash = hash_fn or _default_hash
        self._lock = threading.RLock()
        self._scanned = False
        self._loras: list[LoraEntry] = []
        self._checkpoints: list[CheckpointEntry] = []
        self._errors: list[ScanError] = []
        self._names = LoraNames([])
        # Where a checkpoint named by a path outside checkpoint_dir may be: None = anywhere (the CLI, the machine's own
        # user); a tuple = only under these folders (a server sets its allowed_paths, so the index never records a
        # file outside its roots even if a name slipped past the routes' checks).
        self.outside_roots: tuple[Path, ...] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Library:
        """The library of ``--lora-dir``/``--models-dir``/``LORADECK_HOME`` (index in ``<home>/cache``)."""
        return cls(settings.lora_path, settings.checkpoint_dir, settings.cache_dir)

    # ------------------------------------------------------------ scanning

    def scan(self, on_progress: ProgressFn | None = None) -> ScanReport:
        """Walk both folders, hash new/changed files, drop vanished ones from the index; returns what happened."""
        t0 = time.perf_counter()
        with self._lock:
            lora_found = [(root, walk_models(root, LORA_EXTS) if root.is_dir() else []) for root in self.lora_roots]
            ckpt_found = (
                walk_models(self.checkpoint_dir, CHECKPOINT_EXTS, diffusers_dirs=True)
                if self.checkpoint_dir.is_dir()
                else []
            )
            total = sum(len(found) for _root, found in lora_found) + len(ckpt_found)
            progress = _Progress(total, on_progress)
            loras, lora_errs, hashed, reused = [], [], 0, 0
            for root, found in lora_found:
                e, errs, h, r = self._scan_loras(root, found, progress)
                loras += e
                lora_errs += errs
                hashed += h
                reused += r
            ckpts, ckpt_errs, c_reused = self._scan_checkpoints(ckpt_found, progress)
            self._loras, self._checkpoints = loras, ckpts
            self._errors = lora_errs + ckpt_errs
            self._names = LoraNames(loras)
            self._scanned = True
            return ScanReport(
                loras=len(loras),
                checkpoints=len(ckpts),
                hashed=hashed,
                reused=reused + c_reused,
                errors=list(self._errors),
                seconds=time.perf_counter() - t0,
            )

    refresh = scan  # A1111's "refresh-loras"/"refresh-checkpoints": same walk, the index makes it cheap

    def _scan_loras(self, root: Path, found: list[Found], progress: _Progress):
        return self._scan_root(
            root, found, "lora", lambda f: lora_row(f, root, self._hash), lambda r, f: lora_entry(r, f, root), progress
        )

    def _scan_checkpoints(self, found: list[Found], progress: _Progress):
        root = self.checkpoint_dir
        entries, errors, _read, reused = self._scan_root(
            root,
            found,
            "checkpoint",
            lambda f: checkpoint_row(f, root),
            lambda r, f: checkpoint_entry(r, f, root),
            progress,
        )
        return entries, errors, reused

    def _scan_root(self, root: Path, found: list[Found], kind: str, make_row, make_entry, progress: _Progress):
        """Entries for ``found`` under ``root``: index rows reused when size and mtime match, else read (and hashed,
        for LoRAs) and written back in batches; rows of vanished files pruned. → (entries, errors, read, reused)."""
        cached = self.index.rows(str(root), kind)
        entries, errors, pending = [], [], []
        read = reused = 0
        for f in found:
            row = cached.get(str(f.path))
            if row is not None and row.is_current(f.stat.st_size, f.stat.st_mtime_ns):
                reused += 1
            else:
                row = make_row(f)
                read += 1
                pending.append(row)
                if len(pending) >= _BATCH:
                    self.index.put(pending)
                    pending = []
            entry, error = _entry_or_error(make_entry, row, f)
            if error:
                errors.append(ScanError(f.path, kind, error))
            else:
                entries.append(entry)
            progress.step(f.path)
        self.index.put(pending)
        self.index.prune(str(root), kind, {str(f.path) for f in found})
        return entries, errors, read, reused

    def _ensure_scanned(self) -> None:
        if not self._scanned:
            self.scan()

    # ------------------------------------------------------------ listing

    def loras(self) -> list[LoraEntry]:
        """Every readable LoRA, in A1111's natural order (duplicated stems included)."""
        self._ensure_scanned()
        return list(self._loras)

    def checkpoints(self) -> list[CheckpointEntry]:
        self._ensure_scanned()
        return list(self._checkpoints)

    def errors(self) -> list[ScanError]:
        """Files the last scan could not read, one sentence each."""
        self._ensure_scanned()
        return list(self._errors)

    # ------------------------------------------------------------ resolving

    def resolve_lora(self, name: str) -> LoraEntry:
        """A prompt name → entry: stem or alias as A1111 (case-sensitive; a duplicated alias resolves by stem only),
        or ``subfolder/name``. An unknown name rescans once, then raises LoraNotFound with a did-you-mean."""
        self._ensure_scanned()
        entry = self._names.lookup(name)
        if entry is None:
            self.refresh()
            entry = self._names.lookup(name)
        if entry is None:
            raise LoraNotFound(self._not_found(name))
        return entry

    def resolve_loras(self, names: Iterable[str]) -> tuple[dict[str, LoraEntry], list[LoraNotFound]]:
        """Resolve several names with at most ONE rescan; unknown names come back as errors so generation can go on
        with the rest (A1111's behaviour, not Forge's)."""
        self._ensure_scanned()
        names = list(dict.fromkeys(names))
        if any(self._names.lookup(n) is None for n in names):
            self.refresh()
        found, missing = {}, []
        for n in names:
            entry = self._names.lookup(n)
            if entry is None:
                missing.append(LoraNotFound(self._not_found(n)))
            else:
                found[n] = entry
        return found, missing

    def _not_found(self, name: str) -> str:
        close = difflib.get_close_matches(name, self._names.candidates(), n=1, cutoff=0.6)
        if not close:
            lowered = {c.lower(): c for c in self._names.candidates()}
            close = [lowered[name.lower()]] if name.lower() in lowered else []
        if close:
            return f"LoRA not found: {name} (did you mean {close[0]}?)"
        return f"LoRA not found: {name} (no LoRA with that name or alias in {self.lora_dir})"

    def resolve_checkpoint(self, name_or_path: str | Path, *, paths: bool = True) -> CheckpointEntry:
        """Title (``sub/x.safetensors [hash]``), name, model_name, stem, a hash (AutoV2/AutoV1/sha256 prefix), or a
        path to a file or diffusers folder anywhere on disk (under ``outside_roots`` when set; never when ``paths``
        is False: names from the network). Unknown → one rescan, then ModelLoadError."""
        self._ensure_scanned()
        entry = self._find_checkpoint(str(name_or_path))
        if entry is None:
            self.refresh()
            entry = self._find_checkpoint(str(name_or_path))
        if entry is not None:
            return entry
        path = Path(name_or_path).expanduser()
        if paths and self._may_open(path) and (path.is_file() or (path / "model_index.json").is_file()):
            return self._outside_checkpoint(path)
        pool = [c.name for c in self._checkpoints] + [c.stem for c in self._checkpoints]
        close = difflib.get_close_matches(str(name_or_path), pool, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else f" (nothing matches in {self.checkpoint_dir})"
        raise CheckpointNotFound(f"Checkpoint not found: {name_or_path}{hint}")

    def find_checkpoint(self, name: str) -> CheckpointEntry | None:
        """The library's entry for a checkpoint name or title, without a rescan; None when it has none."""
        self._ensure_scanned()
        return self._find_checkpoint(str(name))

    def _find_checkpoint(self, key: str) -> CheckpointEntry | None:
        key = key.replace("\\", "/")
        for attr in ("title", "name", "model_name", "stem"):
            for c in self._checkpoints:
                if getattr(c, attr) == key:
                    return c
        for c in self._checkpoints:
            if str(c.path) == key:
                return c
        h = valid_hash(key)
        if h and len(h) >= 8:
            return next((c for c in self._checkpoints if c.hashes.matches(h)), None)
        return None

    def _may_open(self, path: Path) -> bool:
        if self.outside_roots is None:
            return True
        from loradeck.library.confine import under

        return path.is_absolute() and under(path, self.outside_roots)

    def _outside_checkpoint(self, path: Path) -> CheckpointEntry:
        """A checkpoint given by path outside the models folder: summarised (and cached) like one inside."""
        st = path.stat()
        found = Found(path, st, frozenset(p.name for p in path.parent.iterdir()), is_dir=path.is_dir())
        row = self.index.get(str(path))
        if row is None or not row.is_current(st.st_size, st.st_mtime_ns):
            row = checkpoint_row(found, path.parent)
            if row.error:
                raise ModelLoadError(row.error)
            self.index.put([row])
        return checkpoint_entry(row, found, path.parent)

    # ------------------------------------------------------------ hashes

    def checkpoint_sha256(
        self, entry: CheckpointEntry, on_bytes: Callable[[int, int], None] | None = None
    ) -> str | None:
        """The full sha256 of a single-file checkpoint, hashed once (streamed) and then read from the index.
        Updates ``entry`` in place. None for diffusers folders (no single file to hash; A1111 has none either)."""
        if entry.format == "diffusers":
            return None
        if entry.sha256:
            return entry.sha256
        st = entry.path.stat()
        row = self.index.get(str(entry.path))
        if row is not None and row.is_current(st.st_size, st.st_mtime_ns) and row.sha256:
            sha = row.sha256
        else:
            hashes = hash_file(entry.path, tensor_hash=False, on_bytes=on_bytes)
            sha = hashes.sha256
            if row is not None and row.is_current(st.st_size, st.st_mtime_ns):
                self.index.put([replace(row, sha256=sha, autov1=hashes.autov1)])
        entry.hashes = replace(entry.hashes, sha256=sha)
        return sha

    def hash_checkpoints(self, on_progress: ProgressFn | None = None) -> int:
        """Compute every missing checkpoint sha256 now; returns how many were hashed."""
        todo = [c for c in self.checkpoints() if c.sha256 is None and c.format != "diffusers"]
        progress = _Progress(len(todo), on_progress)
        for c in todo:
            self.checkpoint_sha256(c)
            progress.step(c.path)
        return len(todo)

    def by_hash(self, short: str) -> LoraEntry | CheckpointEntry | None:
        """The LoRA (first) or checkpoint a hash from an infotext or Civitai names: 8-hex AutoV1, 10-hex AutoV2, 12-hex
        AutoV3 (or Forge's sha256[:12]), or a full sha256 / tensor hash. None when nothing matches or the hash is the
        bogus ``e3b0c44298fc…``."""
        h = valid_hash(short)
        if not h or len(h) < 8:
            return None
        for entry in self.loras():
            if entry.hashes.matches(h):
                return entry
        for c in self.checkpoints():
            if c.hashes.matches(h):
                return c
        return None


def _entry_or_error(make_entry, row, found: Found):
    """(entry, None), or (None, one sentence) for a row that holds an error or cannot be turned into an entry
    (sidecars, cached metadata): whatever goes wrong with one file, the scan lists it as unreadable and goes on."""
    if row.error:
        return None, row.error
    try:
        return make_entry(row, found), None
    except Exception as e:
        return None, one_line(f"{found.path}: cannot be read ({type(e).__name__}: {e})")


class _Progress:
    def __init__(self, total: int, callback: ProgressFn | None):
        self.total, self.done, self.callback = total, 0, callback

    def step(self, path: Path) -> None:
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total, path)
