"""`kb`: the one entry point (typer). One module per command group; each reads defaults from the settings,
applies its options, builds what it needs through `app.components` and reports errors through `common.guard`.

Exit codes: 0 success; 2 user error (bad argument, missing index or model, index locked); 3 ingest finished but
some files were skipped; 1 an unexpected failure (a bug: please report it with the traceback).
"""

from __future__ import annotations

import os
import sys

import typer

from . import (
    analytics,
    bench,
    bestbets,
    crawl,
    evaluate,
    ingest,
    models,
    rerank,
    search,
    serve,
    tune,
    ui,
    vocabulary,
    watch,
)
from .common import err

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Enterprise knowledge-base search: ingest documents, search them, rerank, evaluate, serve.")

for group in (ingest, watch, crawl, search, evaluate, tune, analytics, rerank, models, vocabulary, bestbets, bench,
              serve, ui):
    group.register(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted; the index keeps its last complete version")
        sys.exit(130)
