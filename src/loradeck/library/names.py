"""Name tables for ``<lora:NAME>``, built the way A1111 builds them (networks.py), plus ``subfolder/name``.

Walking entries in natural order:
- ``by_stem[stem]`` — a later file with the same stem replaces the earlier one (A1111's silent overwrite, #16980);
- ``by_alias[stem]`` and ``by_alias[alias]`` — if the alias is already present (another file's stem or alias, or a
  repeated stem), ``alias.lower()`` becomes *forbidden*; ``none`` is forbidden from the start;
- lookup of ``n``: if ``n.lower()`` is forbidden → by stem only; else stems and aliases. Case-sensitive.
We add ``sub/dir/stem`` (with or without extension), which names every file uniquely.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from loradeck.library.entries import LoraEntry


class LoraNames:
    def __init__(self, entries: Iterable[LoraEntry]):
        entries = list(entries)
        self.by_stem: dict[str, LoraEntry] = {}
        self.by_alias: dict[str, LoraEntry] = {}
        self.forbidden: set[str] = {"none"}
        self.by_qualified: dict[str, LoraEntry] = {}
        for e in entries:
            self.by_stem[e.name] = e
            if e.alias in self.by_alias:
                self.forbidden.add(e.alias.lower())
            self.by_alias[e.name] = e
            self.by_alias[e.alias] = e
            self.by_qualified[e.qualified_name] = e
            self.by_qualified[f"{e.qualified_name}{e.path.suffix}"] = e
        for e in entries:
            e.alias_forbidden = e.alias != e.name and e.alias.lower() in self.forbidden
        _warn_shadowed(entries, self.by_stem)

    def lookup(self, name: str) -> LoraEntry | None:
        if "/" in name or "\\" in name:
            return self.by_qualified.get(name.replace("\\", "/").strip("/"))
        if name.lower() in self.forbidden:
            return self.by_stem.get(name)
        return self.by_alias.get(name)

    def candidates(self) -> list[str]:
        """Every name that resolves, for did-you-mean suggestions."""
        return list(dict.fromkeys([*self.by_alias, *self.by_qualified]))


def _warn_shadowed(entries: list[LoraEntry], by_stem: dict[str, LoraEntry]) -> None:
    groups: dict[str, list[LoraEntry]] = defaultdict(list)
    for e in entries:
        groups[e.name].append(e)
    for stem, group in groups.items():
        if len(group) < 2:
            continue
        winner = by_stem[stem]
        for e in group:
            if e is not winner:
                message = (
                    f"{e.path}: another LoRA named {stem} ({winner.qualified_name}) comes later, so <lora:{stem}:…> "
                    f"means that one; use <lora:{e.qualified_name}:…> for this file."
                )
                if message not in e.warnings:
                    e.warnings.append(message)
