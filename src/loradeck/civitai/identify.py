"""Identify local model files on Civitai by hash and write their sidecars.

One streamed pass per file gives SHA256 and AutoV3 (``loradeck.formats.hashes``). SHA256s go to Civitai in batches
of 100 (``POST /model-versions/by-hash``); a file that misses is looked up once more by its 12-hex AutoV3, which
survives metadata rewrites (SwarmUI and friends change the SHA256 but not the tensor bytes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from loradeck.civitai.api import CivitaiClient
from loradeck.civitai.errors import CivitaiError
from loradeck.civitai.records import ModelVersion
from loradeck.civitai.sidecars import write_civitai_sidecars
from loradeck.formats.hashes import FileHashes, hash_file

MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


@dataclass(frozen=True)
class Identified:
    path: Path
    version: ModelVersion
    matched_by: str  # "SHA256" or "AutoV3"
    sha256: str
    sidecars: tuple[Path, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class IdentifyReport:
    matched: tuple[Identified, ...]
    unmatched: tuple[Path, ...]  # hashed fine, not on Civitai
    failed: tuple[tuple[Path, str], ...]  # (path, one sentence): unreadable file, or a lookup error for it


def model_files(paths: Iterable[Path]) -> list[Path]:
    """Files given directly, plus model files found recursively under given folders (sorted, no duplicates)."""
    found: dict[Path, None] = {}
    for p in map(Path, paths):
        if p.is_dir():
            for sub in sorted(p.rglob("*")):
                if sub.is_file() and sub.suffix.lower() in MODEL_SUFFIXES:
                    found[sub] = None
        else:
            found[p] = None
    return list(found)


def identify(
    client: CivitaiClient,
    paths: Iterable[Path],
    *,
    nsfw: bool = False,
    write_sidecars: bool = True,
    on_hashed: Callable[[Path, int, int], None] | None = None,
) -> IdentifyReport:
    """Hash ``paths`` (files or folders), look them up on Civitai, write sidecars for the matches.

    ``on_hashed(path, index, count)`` is called after each file is hashed (hashing big checkpoints is the slow part).
    A preview already beside a file is kept; ``name.json`` keeps the user's non-empty values and unknown keys."""
    files = model_files(paths)
    hashed: dict[Path, FileHashes] = {}
    failed: list[tuple[Path, str]] = []
    for index, path in enumerate(files):
        try:
            hashed[path] = hash_file(path)
        except OSError as exc:
            failed.append((path, f"{path}: cannot be read ({exc.strerror or exc})."))
        if on_hashed:
            on_hashed(path, index + 1, len(files))
    by_sha = client.versions_by_sha256(h.sha256 for h in hashed.values())
    matched: list[Identified] = []
    unmatched: list[Path] = []
    for path, hashes in hashed.items():
        version, how = by_sha.get(hashes.sha256.upper()), "SHA256"
        if version is None and hashes.autov3:
            try:
                version, how = client.version_by_hash(hashes.autov3), "AutoV3"
            except CivitaiError as exc:
                failed.append((path, f"{path}: {exc}"))
                continue
        if version is None:
            unmatched.append(path)
            continue
        matched.append(_record(client, path, version, how, hashes, nsfw, write_sidecars))
    return IdentifyReport(tuple(matched), tuple(unmatched), tuple(failed))


def _record(
    client: CivitaiClient,
    path: Path,
    version: ModelVersion,
    how: str,
    hashes: FileHashes,
    nsfw: bool,
    write: bool,
) -> Identified:
    if not write:
        return Identified(path, version, how, hashes.sha256)
    out = write_civitai_sidecars(client, path, version, sha256=hashes.sha256, nsfw=nsfw, replace_preview=False)
    return Identified(path, version, how, hashes.sha256, tuple(out.written), tuple(out.warnings))
