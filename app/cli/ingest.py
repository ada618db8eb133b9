"""`kb ingest PATH...`: add, update and delete documents so that the index matches the given files and folders."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from .common import (
    EmbedderOpt,
    IndexOpt,
    JsonOpt,
    err,
    fail,
    guard,
    load_embedder,
    operator,
    out,
    quiet_libraries,
    settings_for,
)


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="files or folders to ingest")],
    index: IndexOpt = None,
    embedder: EmbedderOpt = None,
    no_delete: Annotated[bool, typer.Option("--no-delete", help="keep documents whose files disappeared")] = False,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="start a new index (e.g. for another embedder)")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add, update and delete documents so that the index matches the given files and folders. Exit 2 when none of
    the given paths exists (nothing to ingest: a bad argument); when only some are missing, the rest is ingested
    and the missing are reported as skipped (exit 3)."""
    # checked before any import or model load, so that a mistyped path is answered at once
    missing = [p for p in paths if not os.path.lexists(p)]  # a broken symbolic link is there: skipped as a link
    if missing and len(missing) == len(paths):
        fail(f"{', '.join(str(p) for p in missing)}: no such file or folder; give the files or folders to ingest")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..components import audit_log, make_library

    quiet_libraries()
    s = settings_for(index, embedder)
    library = make_library(s, load_embedder(s))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, disable=as_json, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        with guard():
            report = library.sync(paths, delete=not no_delete, rebuild=rebuild, progress=progress)
    if report.changed or rebuild:
        audit_log(s).record(operator(), "ingest", paths=[str(p) for p in paths], added=len(report.added),
                            updated=len(report.updated), deleted=len(report.deleted), rebuild=rebuild)
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        for file, reason in report.skipped:
            err.print(f"[yellow]skipped[/] {file}: {reason}", highlight=False, soft_wrap=True)
        for file, page, reason in report.pages_not_read:
            err.print(f"[yellow]page not read[/] {file} page {page}: {reason}", highlight=False, soft_wrap=True)
        out.print(f"{report.files_seen} files read: {len(report.added)} added, {len(report.updated)} updated, "
                  f"{report.unchanged} unchanged, {len(report.deleted)} deleted, {len(report.skipped)} skipped; "
                  f"{report.chunks_written} chunks embedded; index {s.index_dir} now holds {report.total_documents} "
                  f"documents, {report.total_chunks} chunks ({report.seconds:.1f} s)", highlight=False)
        if report.reanalyzed:
            out.print("BM25 was analysed again with the changed user dictionary (no re-embedding)", highlight=False)
    raise typer.Exit(report.exit_code)


def register(app: typer.Typer) -> None:
    app.command()(ingest)
