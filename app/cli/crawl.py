"""`kb crawl URL`: index one intranet site's pages and keep the index in line with it on every re-crawl."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from .common import (
    EmbedderOpt,
    IndexOpt,
    JsonOpt,
    err,
    guard,
    load_embedder,
    operator,
    out,
    quiet_libraries,
    settings_for,
)


def crawl(
    url: Annotated[str, typer.Argument(help="the site's start page, e.g. http://intranet/hr/")],
    max_pages: Annotated[int, typer.Option("--max-pages", min=1, help="most pages to request (304s count)")] = 200,
    acl: Annotated[Optional[list[str]], typer.Option(
        "--acl", help="access group of every page (repeatable); without it everyone may read them, as files "
                      "without a sidecar")] = None,
    index: IndexOpt = None,
    embedder: EmbedderOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Crawl a site (same host, robots.txt obeyed, sitemap.xml read, links followed breadth-first) into the index;
    a re-crawl downloads only changed pages and deletes the pages gone from the site."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..components import audit_log, make_library
    from ..services.crawl import crawl_site

    quiet_libraries()
    s = settings_for(index, embedder)
    library = make_library(s, load_embedder(s))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, disable=as_json, transient=True) as bar:
        pages = bar.add_task("crawl", total=max_pages)
        tasks: dict[str, int] = {}

        def on_page(page: str, done: int, total: int) -> None:
            bar.update(pages, completed=done, total=total, description=f"crawl {page}")

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        with guard():
            report = crawl_site(url, library, max_pages, acl or [], on_page=on_page, progress=progress)
    ix = report.index
    if ix.changed:
        audit_log(s).record(operator(), "crawl", paths=[url], added=len(ix.added), updated=len(ix.updated),
                            deleted=len(ix.deleted), rebuild=False)
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
        raise typer.Exit(report.exit_code)
    for page, reason in [*report.failed, *ix.skipped]:
        err.print(f"[yellow]skipped[/] {page}: {reason}", highlight=False, soft_wrap=True)
    for page in report.disallowed:
        err.print(f"[dim]robots.txt disallows[/] {page}", highlight=False, soft_wrap=True)
    if not report.complete:
        err.print(f"[yellow]stopped at --max-pages {max_pages}[/] with pages left to fetch: pages not reached are "
                  "kept in the index; raise --max-pages to crawl the whole site", highlight=False)
    out.print(f"{report.site}: {report.fetched} pages requested ({report.not_modified} not modified), "
              f"{len(report.gone)} gone, {len(report.disallowed)} disallowed by robots.txt, {len(report.failed)} "
              f"failed; {len(ix.added)} added, {len(ix.updated)} updated, {len(ix.deleted)} deleted; "
              f"{ix.chunks_written} chunks embedded; index {s.index_dir} now holds {ix.total_documents} documents, "
              f"{ix.total_chunks} chunks ({ix.seconds:.1f} s)", highlight=False)
    raise typer.Exit(report.exit_code)


def register(app: typer.Typer) -> None:
    app.command()(crawl)
