"""`kb ui` (start the Streamlit app) and `kb demo` (ingest the sample knowledge base, then start the app).

The command becomes the app's server (exec of `python -m streamlit run app/ui/main.py`), headless, on the
given host and port. Options that choose the index and models reach it as `KB_*` environment variables, which the app's
settings read like every other command's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "docs"


def streamlit_command(port: int, host: str) -> list[str]:
    """The command line that serves the app (no browser is opened; usage statistics are not sent)."""
    from app.ui import APP_FILE

    return [sys.executable, "-m", "streamlit", "run", str(APP_FILE), "--server.headless", "true",
            "--server.port", str(port), "--server.address", host, "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "viewer", "--theme.base", "light",
            # blue controls: red and green are kept for what scores mean
            "--theme.primaryColor", "#0969da"]


def app_environment(index: Path | None, embedder: str | None, reranker: str | None) -> dict[str, str]:
    """This process's environment plus KB_INDEX_DIR / KB_EMBEDDER / KB_RERANKER for the options given."""
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name, value in (("KB_INDEX_DIR", index), ("KB_EMBEDDER", embedder), ("KB_RERANKER", reranker)):
        if value is not None:
            env[name] = str(value)
    return env


def _serve(port: int, host: str, index: Path | None, embedder: str | None, reranker: str | None) -> None:
    if not 1 <= port <= 65535:
        raise typer.BadParameter(f"must be between 1 and 65535; got {port}", param_hint="--port")
    typer.echo(f"Knowledge search app on http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port} "
               "(Ctrl+C stops it)", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # Become the server (exec, not a child process): Ctrl+C and a supervisor's SIGTERM reach Streamlit itself.
    os.execve(sys.executable, streamlit_command(port, host), app_environment(index, embedder, reranker))


PortOpt = Annotated[int, typer.Option("--port", help="port to serve the app on")]
HostOpt = Annotated[str, typer.Option("--host", help="address to listen on (0.0.0.0: every interface)")]
IndexOpt = Annotated[Optional[Path], typer.Option("--index", help="index folder [default: settings index_dir]")]
EmbedderOpt = Annotated[Optional[str], typer.Option("--embedder", help="hub name or local folder")]
RerankerOpt = Annotated[Optional[str], typer.Option("--reranker", help="hub name, local folder, or 'none'")]


def ui(port: PortOpt = 8501, host: HostOpt = "127.0.0.1", index: IndexOpt = None, embedder: EmbedderOpt = None,
       reranker: RerankerOpt = None) -> None:
    """Start the search app (Streamlit): search, raw data, rerank playground, library, tuning, status."""
    _serve(port, host, index, embedder, reranker)


def demo(port: PortOpt = 8501, host: HostOpt = "127.0.0.1", index: IndexOpt = None, embedder: EmbedderOpt = None,
         reranker: RerankerOpt = None,
         docs: Annotated[Path, typer.Option("--docs", help="folder to ingest first")] = SAMPLES) -> None:
    """Ingest the sample knowledge base (unchanged files are skipped), then start the search app on it."""
    from app.cli import _load_embedder, _quiet_libraries, fail
    from app.settings import get_settings
    from retrieval.index import IndexMismatch
    from retrieval.storage import IndexLocked

    from .ingest_sync import sync

    _quiet_libraries()
    if not docs.is_dir():
        fail(f"--docs {docs}: no such folder; run `kb demo` from a clone of the project, or pass --docs FOLDER")
    s = get_settings()
    index_dir = index if index is not None else s.index_dir
    emb = _load_embedder(embedder)
    typer.echo(f"Ingesting {docs} into {index_dir} with {emb.name}…", err=True)
    try:
        report = sync([docs], Path(index_dir), emb, s.chunk_max_tokens, s.chunk_overlap,
                      int(s.max_file_mb * 2**20), s.ann_threshold, milvus=s.milvus_config())
    except (IndexLocked, IndexMismatch) as exc:
        fail(str(exc))
    for file, reason in report.skipped:
        typer.echo(f"skipped {file}: {reason}", err=True)
    typer.echo(f"{len(report.added)} added, {len(report.updated)} updated, {report.unchanged} unchanged; the index "
               f"holds {report.total_documents} documents, {report.total_chunks} passages", err=True)
    # The app resolves the embedder as this command did (the same fallback, said in its banner).
    _serve(port, host, Path(index_dir), embedder, reranker)


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)
    app.command("demo")(demo)
