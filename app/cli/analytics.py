"""`kb analytics [--days 30] [--json]`: what people asked, how fast it answered, what went unanswered, feedback;
`kb feedback export FILE`: people's judgments as JSON lines (for `kb eval --judgments` and `kb tune --judgments`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .common import IndexOpt, JsonOpt, fail, guard, out, settings_for

feedback_app = typer.Typer(help="People's judgments of search results.", no_args_is_help=True)


def _events(s):
    from ..components import open_events

    if not s.events:
        fail("the setting `events` is off: nothing is recorded (KB_EVENTS=true)")
    with guard():
        store = open_events(s)
    if store is None:
        fail("the events database cannot be opened (see the warning above); check KB_DATABASE_URL")
    return store


def analytics(
    days: Annotated[int, typer.Option("--days", min=1, max=3650, help="the last this many days")] = 30,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
    suggestions: Annotated[bool, typer.Option("--suggestions", help="instead: synonym pairs and best bets learned "
                                              "from reformulated and unanswered questions, with their counts "
                                              "(accept or dismiss them with `kb vocabulary accept|dismiss ID`)")
                           ] = False,
) -> None:
    """Searches per day, P50/P95 latency, the share with no answer, top queries, the no-answer and low-score
    queries (content gaps), thumbs per document and per best bet."""
    from ..components import read_index

    s = settings_for(index)
    store = _events(s)
    if suggestions:
        return _suggestions(s, store, days, as_json)
    try:
        with guard():
            report = store.analytics(days)
    finally:
        store.close()
    with guard():
        idx = read_index(s)
    for d in report["per_document"]:
        rec = idx.documents.get(d["doc_id"]) if idx is not None else None
        d["title"], d["source"] = (rec.title, rec.source) if rec is not None else ("", "")
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
        return
    lat, fb = report["latency_ms"], report["feedback"]
    share = "-" if report["no_answer_share"] is None else f"{report['no_answer_share']:.1%}"
    out.print(f"last {days} days: {report['searches']} searches; latency p50 {lat.get('p50', '-')} ms, p95 "
              f"{lat.get('p95', '-')} ms; no answer {share}; thumbs up {fb['up']}, down {fb['down']}, "
              f"'none of these answers' {fb['none_answers']}", highlight=False)
    for title, rows, cols in (("top queries", report["top_queries"], ("query", "count")),
                              ("no answer", report["no_answer_queries"], ("query", "count", "last")),
                              ("weak answers", report["low_score_queries"], ("query", "count", "last")),
                              ("thumbs per document", report["per_document"], ("title", "up", "down", "source")),
                              ("per reranker model", report["by_reranker"],
                               ("reranker", "searches", "no_answer_share", "mean_ms", "up", "down", "none_answers")),
                              ("best bets", report["best_bets"], ("bet_id", "label", "shown", "up", "down"))):
        if not rows:
            continue
        table = Table(title=title)
        for c in cols:
            table.add_column(c)
        for r in rows:
            table.add_row(*(str(r[c]) for c in cols))
        out.print(table)


def _suggestions(s, store, days: int, as_json: bool) -> None:
    from ..components import decisions

    try:
        with guard():
            found = decisions(s).open(store.history(days))
    finally:
        store.close()
    if as_json:
        print(json.dumps({"days": days, "suggestions": [x.to_dict() for x in found]}, ensure_ascii=False))
        return
    if not found:
        out.print(f"no suggestions from the last {days} days", highlight=False)
        return
    table = Table(title=f"suggestions from the last {days} days")
    table.add_column("id", no_wrap=True)
    for c in ("kind", "terms", "document", "count", "people", "why"):
        table.add_column(c, overflow="fold")
    for x in found:
        table.add_row(x.suggestion_id, x.kind, " = ".join(x.terms) if x.kind == "synonyms" else x.terms[0],
                      x.doc_id or ("-" if x.kind == "synonyms" else "choose one (--doc)"), str(x.count),
                      str(x.people), x.reason)
    out.print(table)


@feedback_app.command("export")
def export(file: Annotated[Path, typer.Argument(help="where the JSON lines go ('-': stdout)")],
           index: IndexOpt = None) -> None:
    """Every judgment as a JSON line: query, groups, chunk_id, doc_id, useful, the chunk's text, comment."""
    from ..components import read_index
    from ..quality.judgments import export_rows

    s = settings_for(index)
    store = _events(s)
    with guard():
        idx = read_index(s)
    lines = [json.dumps(row, ensure_ascii=False) for row in export_rows(store.judgments(), idx)]
    store.close()
    text = "".join(line + "\n" for line in lines)
    if str(file) == "-":
        print(text, end="")
    else:
        from ingest.files import atomic_write  # here: the ingest package loads every format's reader

        atomic_write(file, text, private=True)  # people's questions and judgments: 0600
        typer.echo(f"{len(lines)} judgments written to {file}", err=True)


def register(app: typer.Typer) -> None:
    app.command("analytics")(analytics)
    app.add_typer(feedback_app, name="feedback")
