"""`kb vocabulary show | set KIND [FILE]`: the synonyms and the user dictionary in the shared database, the same
words the app's Vocabulary page edits. Running APIs and apps, on any machine, use a change within
`vocabulary_reload_s` seconds. KIND is `synonyms` or `user_dict`; lines the reader cannot use are printed (with
their numbers) and skipped, the rest applies.

`kb vocabulary accept | dismiss ID`: decide a suggestion of `kb analytics --suggestions` (a synonym pair is added
to the synonyms; a best bet is pinned); both are written to the audit log."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import IndexOpt, JsonOpt, err, guard, operator, settings_for, warn

KindArg = Annotated[str, typer.Argument(help="synonyms | user_dict")]
IdArg = Annotated[str, typer.Argument(help="a suggestion's id (`kb analytics --suggestions`)")]
DaysOpt = Annotated[int, typer.Option("--days", min=1, max=3650, help="the searches of the last this many days")]


def _suggestion(s, suggestion_id: str, days: int):
    """(the open suggestion `suggestion_id`, the decisions) from the events store."""
    from ..components import decisions
    from ..services.suggestions import find
    from .analytics import _events

    store = _events(s)
    try:
        with guard():
            chosen = decisions(s)
            return find(chosen.open(store.history(days)), suggestion_id), chosen
    finally:
        store.close()


def register(app: typer.Typer) -> None:
    group = typer.Typer(no_args_is_help=True, help="The synonyms and user dictionary every process uses.")
    app.add_typer(group, name="vocabulary")

    @group.command("show")
    def show(kind: KindArg, index: IndexOpt = None, as_json: JsonOpt = False) -> None:
        """Print the stored text of KIND (a file of before is imported first when nothing is stored)."""
        from ..components import vocabulary_store
        from ..services.vocabulary import check_words

        with guard():
            store = vocabulary_store(settings_for(index))
            text, version = store.text(kind)
        if as_json:
            print(json.dumps({"kind": kind, "version": version, "text": text, "problems": check_words(kind, text),
                              "store": store.control.where}, ensure_ascii=False))
            return
        sys.stdout.write(text)
        err.print(f"{kind}: version {version if version is not None else 'none (nothing saved)'} in "
                  f"{store.control.where}", highlight=False)

    @group.command("set")
    def set_(kind: KindArg, file: Annotated[Optional[Path], typer.Argument(
                 help="UTF-8 text to store whole ('-' or none: standard input)")] = None,
             index: IndexOpt = None, as_json: JsonOpt = False) -> None:
        """Replace KIND with the text of FILE (or standard input)."""
        from ..components import apply_user_dictionary, audit_log, vocabulary_store

        with guard():
            text = sys.stdin.read() if file is None or str(file) == "-" else file.read_text(encoding="utf-8-sig")
            s = settings_for(index)
            store = vocabulary_store(s)
            entry, problems = store.save(kind, text, operator().who)
            # a corpus in Milvus holds its BM25 terms: they are made again now, not by each reader
            applied = apply_user_dictionary(s) if kind == "user_dict" else None
        audit_log(s).record(operator(), f"edit {kind}", version=entry.version, lines=len(text.splitlines()),
                            skipped=len(problems))
        for problem in problems:
            warn(problem)
        if as_json:
            print(json.dumps({"kind": kind, "version": entry.version, "problems": problems,
                              "store": store.control.where, "revision": applied}, ensure_ascii=False))
            return
        typer.echo(f"{kind} saved (version {entry.version}, {len(problems)} lines skipped) in "
                   f"{store.control.where}; running APIs and apps use it within {s.vocabulary_reload_s:g} s")
        if applied:
            typer.echo(f"the corpus's BM25 terms were made again with it (revision {applied}); replicas serve it "
                       f"within {s.index_reload_s:g} s")

    @group.command("accept")
    def accept(suggestion_id: IdArg, doc: Annotated[Optional[str], typer.Option(
                   "--doc", help="for a best bet: the document that answers it (default: the one liked)")] = None,
               days: DaysOpt = 30, index: IndexOpt = None, as_json: JsonOpt = False) -> None:
        """Apply a suggestion: a synonym pair is added to the synonyms, a best bet pinned (exact) to its question."""
        from ..components import audit_log, read_index
        from ..services.pinning import target

        s = settings_for(index)
        found, chosen = _suggestion(s, suggestion_id, days)
        with guard():
            if found.kind == "best_bet" and (doc or found.doc_id):
                doc = target(read_index(s), doc or found.doc_id, None)[0]
            written = chosen.accept(found, operator().who, doc)
        audit_log(s).record(operator(), "accept suggestion", suggestion_id=suggestion_id, count=found.count,
                            **written)
        if as_json:
            print(json.dumps({"suggestion_id": suggestion_id, **written}, ensure_ascii=False))
            return
        typer.echo(f"accepted {suggestion_id}: " + (f"synonyms line '{written['line']}' added (version "
                                                    f"{written['version']})" if written["kind"] == "synonyms"
                                                    else f"best bet {written['bet_id']} pinned"))

    @group.command("dismiss")
    def dismiss(suggestion_id: IdArg, days: DaysOpt = 30, index: IndexOpt = None) -> None:
        """Never suggest this again."""
        from ..components import audit_log

        s = settings_for(index)
        found, chosen = _suggestion(s, suggestion_id, days)
        with guard():
            chosen.dismiss(suggestion_id, operator().who)
        audit_log(s).record(operator(), "dismiss suggestion", suggestion_id=suggestion_id, kind=found.kind,
                            terms=list(found.terms), count=found.count)
        typer.echo(f"dismissed {suggestion_id}")
