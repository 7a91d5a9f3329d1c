"""`loradeck embeddings`: the textual-inversion embeddings of the embeddings folders."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from loradeck.cli.common import EmbeddingsDir, console, make_studio, plain


def embeddings(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    embeddings_dir: EmbeddingsDir = None,
) -> None:
    """List the embeddings (name, family, vectors, width, TI hash) and the files that could not be read."""
    studio = make_studio(embeddings_dir=embeddings_dir)
    entries = studio.embeddings()
    unreadable = studio.embedding_library.errors()
    if as_json:
        rows = [e.to_dict() for e in entries]
        rows += [{"name": e.path.stem, "path": str(e.path), "unreadable": True, "error": e.message} for e in unreadable]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    from rich.table import Table

    table = Table("name", "family", "vectors", "width", "hash", "folder")
    for e in entries:
        cells = (e.name, e.family.label, str(e.vectors), str(e.shape), e.short_hash, e.subfolder)
        table.add_row(*(plain(c) for c in cells))  # names come from files: never markup
    for err in unreadable:
        table.add_row(plain(err.path.stem), plain("unreadable", "red"), "", "", "", plain(err.message))
    console.print(table)
    if not entries and not unreadable:
        roots = " or ".join(str(r) for r in studio.settings.embedding_roots)
        console.print(plain(f"No embeddings: put textual-inversion files (.safetensors, .pt) in {roots}."))
