"""`kb watch PATH...`: keep the index in sync while files change, one line per change, until Ctrl+C."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import EmbedderOpt, IndexOpt, err, guard, load_embedder, operator, out, quiet_libraries, settings_for

EXIT_INTERRUPTED = 130  # Ctrl+C, as every `kb` command (app.cli.main)
SEEN = {"added": "created", "modified": "changed", "deleted": "deleted"}  # watchfiles' names, as a person says them
RETRY_S = 10.0  # a failed sync (index locked by `kb ingest`) is tried again this long after, without a change


def watch(
    paths: Annotated[list[Path], typer.Argument(help="files or folders to keep in the index")],
    index: IndexOpt = None,
    embedder: EmbedderOpt = None,
    debounce_ms: Annotated[int, typer.Option("--debounce-ms", min=0,
                                             help="gather a burst of changes for at most this long into one sync "
                                                  "(a burst ends sooner after 50 ms without a change)")] = 1000,
    poll: Annotated[bool, typer.Option("--poll", help="poll instead of OS notifications (network drives)")] = False,
) -> None:
    """Sync the index with the given files and folders now, then again whenever a file in them is created,
    changed, renamed or deleted (Ctrl+C stops)."""
    from ..components import audit_log, make_library
    from ..services.watch import SyncRound
    from ..services.watch import watch as watch_paths

    quiet_libraries()
    s = settings_for(index, embedder)
    library = make_library(s, load_embedder(s))
    audit = audit_log(s)

    failing: list[str] = []  # the error of the last round, when it failed

    def show(round_: SyncRound) -> None:
        for kind, path in round_.changes:
            err.print(f"[dim]file {SEEN.get(kind, kind)}[/] {path}", highlight=False, soft_wrap=True)
        if round_.error is not None:
            # a long `kb ingest` holding the lock fails a retry every RETRY_S: said once, not every time
            if round_.why != "retry" or failing != [round_.error]:
                err.print(f"[bold red]sync failed:[/] {round_.error}; retrying on the next change or in "
                          f"{RETRY_S:.0f} s", highlight=False, soft_wrap=True)
            failing[:] = [round_.error]
            return
        if failing:
            err.print("[green]sync succeeded again[/]", highlight=False)
            failing.clear()
        report = round_.report
        if report is None:  # a round has a report or an error
            return
        for verb, colour, sources in (("indexed", "green", report.added), ("re-indexed", "cyan", report.updated),
                                      ("removed", "magenta", report.deleted)):
            for source in sources:
                out.print(f"[{colour}]{verb}[/] {source}", highlight=False, soft_wrap=True)
        first = round_.why == "start"
        for file, reason in report.skipped:  # a broken file is named once when it changes, not every round
            if first or file in round_.changed_paths:
                err.print(f"[yellow]skipped[/] {file}: {reason}", highlight=False, soft_wrap=True)
        if report.changed:
            audit.record(operator(), "watch", paths=[str(p) for p in paths], added=len(report.added),
                         updated=len(report.updated), deleted=len(report.deleted), rebuild=False)
        elif round_.why == "catch-up":  # nothing changed during the first sync: nothing to say
            return
        elif not first:
            out.print("[dim]no change to the index[/]", highlight=False)
        out.print(f"[dim]index {s.index_dir}: {report.total_documents} documents, {report.total_chunks} chunks "
                  f"({report.seconds:.1f} s)[/]", highlight=False)

    err.print(f"watching {', '.join(map(str, paths))} (Ctrl+C stops)", highlight=False, soft_wrap=True)
    try:
        with guard():
            watch_paths(paths, library, show, debounce_ms=debounce_ms, retry_s=RETRY_S,
                        force_polling=True if poll else None)
    except KeyboardInterrupt:
        err.print("stopped watching; the index keeps its last complete version", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def register(app: typer.Typer) -> None:
    app.command()(watch)
