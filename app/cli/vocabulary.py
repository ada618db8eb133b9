"""`kb vocabulary show | set KIND [FILE]`: the synonyms and the user dictionary in the shared database, the same
words the app's Vocabulary page edits. Running APIs and apps, on any machine, use a change within
`vocabulary_reload_s` seconds. KIND is `synonyms` or `user_dict`; lines the reader cannot use are printed (with
their numbers) and skipped, the rest applies."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import IndexOpt, JsonOpt, err, guard, operator, settings_for, warn

KindArg = Annotated[str, typer.Argument(help="synonyms | user_dict")]


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
