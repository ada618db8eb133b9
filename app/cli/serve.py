"""`kb serve`: the FastAPI service on uvicorn (Swagger UI at /docs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def serve(
    host: Annotated[str, typer.Option("--host", help="bind address; beyond loopback only with sign-in or API keys "
                                      "(or --allow-open)")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
    index: Annotated[Optional[Path], typer.Option("--index", help="index folder [default: settings index_dir]")] = None,
    embedder: Annotated[Optional[str], typer.Option("--embedder", help="hub name or local folder")] = None,
    reranker: Annotated[Optional[str], typer.Option("--reranker", help="hub name, local folder, or 'none'")] = None,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
    allow_open: Annotated[bool, typer.Option("--allow-open", help="listen beyond loopback with no sign-in and no "
                                             "API keys: everyone who reaches it sees every document")] = False,
) -> None:
    """Serve the search API: /search, /rerank (Cohere and TEI shapes), /ingest, /documents, /health, /metrics."""
    import uvicorn

    from ..api import create_app
    from .common import check_exposure, fail, settings_for

    settings = settings_for(index, embedder, reranker)
    check_exposure(settings, host, allow_open, for_app=False)
    try:
        uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10)
    except OSError as exc:
        fail(f"cannot serve on {host}:{port}: {exc}")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
