"""`kb bestbets add | list | remove`: the passages and documents pinned above the results of some questions, the
same best bets the app's Vocabulary page and the API's /bestbets manage. They live in the shared database, so
running APIs and apps, on any machine, show a change within `vocabulary_reload_s` seconds; every change is written
to the audit log. Only people who may read a pinned document ever see it."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from .common import IndexOpt, JsonOpt, guard, operator, out, settings_for


def _documents(s) -> dict:
    """doc_id → DocRecord of the index served (none without an index)."""
    from ..components import read_index

    with guard():
        index = read_index(s)
    return index.documents if index is not None else {}


def described(bet, documents: dict) -> dict:
    """A bet as `list --json` gives it: its fields, its document's title and source, and whether the index holds it."""
    rec = documents.get(bet.doc_id)
    return {**bet.to_dict(), "title": rec.title if rec else "", "source": rec.source if rec else "",
            "in_index": rec is not None}


def register(app: typer.Typer) -> None:
    group = typer.Typer(no_args_is_help=True, help="Passages pinned above the results of some questions.")
    app.add_typer(group, name="bestbets")

    @group.command("add")
    def add(phrases: Annotated[list[str], typer.Argument(help="the questions (exact) or words (contains, synonyms) "
                                                              "the bet answers; quote each")],
            doc: Annotated[Optional[str], typer.Option("--doc", help="pin this document (its doc_id; its first "
                                                                    "passage is shown)")] = None,
            chunk: Annotated[Optional[str], typer.Option("--chunk", help="pin this passage (a chunk_id from `kb "
                                                                        "search --json`)")] = None,
            match: Annotated[str, typer.Option("--match", help="exact | contains | synonyms")] = "contains",
            label: Annotated[str, typer.Option("--label", help="what the card says, e.g. 'recommended by HR'")
                             ] = "recommended",
            index: IndexOpt = None, as_json: JsonOpt = False) -> None:
        """Pin a document (--doc) or a passage (--chunk) to PHRASES."""
        from ..components import audit_log, best_bets_store, read_index
        from ..services.bestbets import new_bet
        from ..services.pinning import target

        s = settings_for(index)
        who = operator()
        with guard():
            doc_id, chunk_id = target(read_index(s), doc, chunk)
            bet = new_bet(phrases, match, label, doc_id, chunk_id, who.who)
            store = best_bets_store(s)
            store.add(bet, who.who)
        audit_log(s).record(who, "add best bet", bet_id=bet.bet_id, doc_id=doc_id, chunk_id=chunk_id,
                            match=bet.match, phrases=list(bet.phrases), label=bet.label)
        if as_json:
            print(json.dumps(bet.to_dict(), ensure_ascii=False))
            return
        typer.echo(f"best bet {bet.bet_id} added in {store.where}; running APIs and apps show it within "
                   f"{s.vocabulary_reload_s:g} s to those who may read it")

    @group.command("list")
    def list_(index: IndexOpt = None, as_json: JsonOpt = False) -> None:
        """Every best bet, oldest first, with its document (or 'not in the index': nobody sees it)."""
        from ..components import best_bets_store

        s = settings_for(index)
        with guard():
            bets = best_bets_store(s).load()
        documents = _documents(s)
        rows = [described(b, documents) for b in bets.bets]
        if as_json:
            print(json.dumps({"version": bets.version, "best_bets": rows}, ensure_ascii=False))
            return
        if not rows:
            typer.echo("no best bets; add one with `kb bestbets add QUESTION --doc DOC_ID`")
            return
        table = Table(show_lines=True)
        table.add_column("bet_id", no_wrap=True)  # what `remove` takes: whole
        for col in ("match", "phrases", "label", "document", "passage"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(r["bet_id"], r["match"], " | ".join(r["phrases"]), r["label"],
                          (r["title"] or r["source"] or r["doc_id"]) if r["in_index"] else
                          f"{r['doc_id']} (not in the index: shown to nobody)", r["chunk_id"] or "first")
        out.print(table)

    @group.command("remove")
    def remove(bet_id: Annotated[str, typer.Argument(help="the bet's id (`kb bestbets list`)")],
               index: IndexOpt = None, as_json: JsonOpt = False) -> None:
        """Remove the best bet BET_ID."""
        from ..components import audit_log, best_bets_store

        s = settings_for(index)
        who = operator()
        with guard():
            bet = best_bets_store(s).remove(bet_id, who.who)
        audit_log(s).record(who, "remove best bet", bet_id=bet.bet_id, doc_id=bet.doc_id, chunk_id=bet.chunk_id,
                            phrases=list(bet.phrases))
        if as_json:
            print(json.dumps({"removed": bet.to_dict()}, ensure_ascii=False))
            return
        typer.echo(f"best bet {bet.bet_id} removed")
