"""`kb serve`: the FastAPI service on uvicorn (Swagger UI at /docs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def serve(
    host: Annotated[str, typer.Option("--host", help="bind address; loopback unless API keys are set")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
    index: Annotated[Optional[Path], typer.Option("--index", help="index folder [default: settings index_dir]")] = None,
    embedder: Annotated[Optional[str], typer.Option("--embedder", help="hub name or local folder")] = None,
    reranker: Annotated[Optional[str], typer.Option("--reranker", help="hub name, local folder, or 'none'")] = None,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Serve the search API: /search, /rerank (Cohere and TEI shapes), /ingest, /documents, /health, /metrics."""
    import uvicorn

    from .api import create_app
    from .cli import err, fail
    from .settings import get_settings

    overrides = {k: v for k, v in (("index_dir", index), ("embedder", embedder), ("reranker", reranker))
                 if v is not None}
    settings = get_settings().model_copy(update=overrides)
    if not settings.api_keys and host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]warning:[/] serving on {host} without API keys: anyone who can reach it sees every "
                  "document; set api_keys in kb.toml", highlight=False)
    try:
        uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10)
    except OSError as exc:
        fail(f"cannot serve on {host}:{port}: {exc}")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
