"""`kb search "QUERY"` / `kb search --queries FILE`: recall K, rerank, show the N best above the threshold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from .common import EmbedderOpt, IndexOpt, JsonOpt, fail, guard, load_embedder, out, quiet_libraries, settings_for, warn


def _print_result(res, as_json: bool, admin: bool = True, said: set[str] | None = None) -> None:
    """Print one result; its warnings not already in `said` are printed and added to it."""
    if as_json:  # `cached` for the operator, not for a search --groups makes as someone else
        print(json.dumps(res.to_dict(show_cached=admin), ensure_ascii=False))
        return
    said = set() if said is None else said
    for w in res.warnings:
        if w not in said:
            said.add(w)
            warn(w)
    if res.also_searched:
        out.print(f"also searched: {', '.join(res.also_searched)}", highlight=False)
    for p in res.pinned:  # best bets: above the results, labelled, never scored
        c = p.chunk
        where = " › ".join(x for x in (c.title, c.section) if x) + (f" p.{c.page}" if c.page else "")
        out.print(f"[bold]★ {escape(p.label)}[/] ({escape(where)}): {escape(c.text[:300])}", highlight=False,
                  soft_wrap=True)
    table = Table(title=f"{res.query}  ({res.timings_ms['total']:.0f} ms)", show_lines=True, expand=True)
    for col in ("rank", "score", "band", "raw", "retrieval"):
        table.add_column(col, no_wrap=True)
    table.add_column("source", ratio=1, overflow="fold")
    table.add_column("text", ratio=3, overflow="fold")
    for r in res.results:
        c = r.hit.chunk
        where = " › ".join(x for x in (c.title, c.section) if x) + (f" p.{c.page}" if c.page else "")
        table.add_row(str(r.rank), ("not reranked" if res.reranker else "-") if r.score is None else f"{r.score:.4f}",
                      r.band or "-",
                      "-" if r.raw_score is None else f"{r.raw_score:.3f}", f"{r.hit.retrieval_score:.4f}",
                      where, c.text[:300])
    out.print(table)
    if res.reranker:
        out.print(f"reranked: {res.reranked} of {res.candidates}", highlight=False)
    if res.below_threshold:
        out.print(f"{len(res.below_threshold)} more below the threshold {res.params['threshold']}")


def search(
    query: Annotated[Optional[str], typer.Argument(help="the question")] = None,
    queries: Annotated[Optional[Path], typer.Option("--queries", help="file with one query per line")] = None,
    index: IndexOpt = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="recall size K")] = None,
    top_n: Annotated[Optional[int], typer.Option("--top-n", help="results shown N")] = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="minimum score 0..1")] = None,
    mode: Annotated[Optional[str], typer.Option("--mode", help="hybrid | dense | lexical")] = None,
    groups: Annotated[Optional[str], typer.Option("--groups", help="search as a member of these comma-separated "
                                                  "access groups [default: every document]")] = None,
    max_per_doc: Annotated[Optional[int], typer.Option("--max-per-doc", help="at most M results per document")] = None,
    merge: Annotated[Optional[bool], typer.Option("--merge/--no-merge", help="join neighbouring chunks of a "
                                                  "document [default: settings merge_adjacent]")] = None,
    filter_: Annotated[Optional[list[str]], typer.Option(
        "--filter", help="only documents whose metadata match: KEY=VALUE (repeat; one key repeated means any of its "
                         "values), updated>=2024-01-01 (>=, <=, >, <), KEY!=VALUE. Keys: format, path, title, "
                         "updated and any front-matter or sidecar field")] = None,
    budget_ms: Annotated[Optional[int], typer.Option(
        "--budget-ms", help="rerank only the best-recalled candidates that fit in this many ms (at least top-n); "
                            "the rest follow in recall order, not reranked; 0: all K [default: settings "
                            "rerank_budget_ms]")] = None,
    embedder: EmbedderOpt = None,
    reranker: Annotated[Optional[str], typer.Option("--reranker", help="hub name, local folder, or 'none'")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Search the index: recall K chunks, rerank them, show the N best above the threshold."""
    from ..services.request import SearchRequest  # cheap by contract: the checks below run before any heavy import

    if (query is None) == (queries is None):
        fail("give either a QUERY or --queries FILE")
    if queries is not None and not queries.is_file():
        fail(f"--queries {queries}: no such file")
    items = [query] if query is not None else [
        line.strip() for line in queries.read_text(encoding="utf-8").splitlines() if line.strip()]
    with guard():  # every request checked before any model loads: a bad value is said at once
        requests = [SearchRequest.of(q, top_k=top_k, top_n=top_n, threshold=threshold, mode=mode,
                                     max_per_doc=max_per_doc, merge=merge, filters=filter_ or [],
                                     rerank_budget_ms=budget_ms) for q in items]
    # only now the heavy imports (torch, FAISS, SQLAlchemy...): a bad argument above is answered in well under 2 s
    from ..components import build_search
    from ..identity import OPERATOR, Caller

    quiet_libraries()
    # the operator's tool: every document, unless --groups says whom to search as
    caller = OPERATOR if groups is None else Caller.member_of(g.strip() for g in groups.split(",") if g.strip())
    s = settings_for(index, embedder, reranker)
    emb = load_embedder(s)
    with guard():
        service = build_search(s, emb, trials=True)  # what people are served, a canary included
    # a result repeats the service's standing warnings (the embedder's fallback, the reranker not loaded): each is
    # said once per command, and load_embedder has already said the embedder's
    said = {emb.warning} if emb.warning else set()
    for request in requests:
        with guard():
            res = service.search(request, caller)
        _print_result(res, as_json, caller.admin, said)


def register(app: typer.Typer) -> None:
    app.command()(search)
