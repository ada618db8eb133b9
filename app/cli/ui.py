"""`kb ui` (start the Streamlit app) and `kb demo` (ingest the sample knowledge base, then start the app).

The command becomes the app's server (exec of `python -m app.ui.launch … run app/ui/main.py`: `streamlit run`
with the models loaded at start), headless, on the given host and port, and prints one address, when the first
page can be shown: with sign-in, the address sign-in returns to. Options that choose the index and models reach
it as `KB_*` environment variables, which the app's settings read like every other command's. With sign-in
configured (`KB_AUTH_*`), the provider settings are written as Streamlit's `[auth]` secrets to a private file
(mode 0600, in the user's runtime or cache folder, never the repository) that Streamlit is pointed at; a
half-configured sign-in, or open mode beyond loopback without `--allow-open`, refuses to start.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Annotated, Optional
from urllib.parse import urlsplit

import typer

from ingest.files import atomic_write

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples" / "docs"


def streamlit_command(port: int, host: str, secrets: Path | None = None, *, max_upload_mb: float = 200,
                      address: str | None = None) -> list[str]:
    """The command line that serves the app (no browser is opened; usage statistics are not sent): Streamlit run
    through `app.ui.launch`, which loads the models as the server starts and prints `Ready: ADDRESS` (default
    `app_address`) when a page can be shown; Streamlit's own address lines are off, so that one is the only
    address printed. `secrets` is the only secrets file Streamlit reads (the sign-in settings), when there is one;
    `max_upload_mb` is the uploader's limit (the `max_file_mb` setting, so the uploader and the Library say the
    same; Streamlit takes whole megabytes)."""
    from app.ui import APP_FILE

    cmd = [sys.executable, "-m", "app.ui.launch", address or f"http://{_browser_host(host)}:{port}",
           health_url(host, port),
           "run", str(APP_FILE), "--server.headless", "true",
           "--server.port", str(port), "--server.address", host, "--browser.gatherUsageStats", "false",
           "--server.maxUploadSize", str(max(1, math.ceil(max_upload_mb))),
           # its "URL: http://127.0.0.1:…" (and "Uvicorn server started on …") is not where sign-in works
           "--logger.hideWelcomeMessage", "true", "--logger.level", "warning",
           "--client.toolbarMode", "viewer", "--theme.base", "light",
           # blue controls: red and green are kept for what scores mean
           "--theme.primaryColor", "#0969da"]
    if secrets is not None:
        cmd += ["--secrets.files", str(secrets)]
    return cmd


def _browser_host(host: str) -> str:
    """The host name a person on this machine opens for a server listening on `host`."""
    return "localhost" if host in ("127.0.0.1", "0.0.0.0", "::", "::1") else host


def health_url(host: str, port: int) -> str:
    """Where this machine reaches the server's health check (a wildcard address is reached on loopback)."""
    reach = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "::1": "[::1]"}.get(host, host)
    return f"http://{reach}:{port}/_stcore/health"


def app_address(auth, host: str, port: int) -> str:
    """The one address to open: with sign-in, the one its redirect URI returns to (a login started at another host
    name comes back without its state and fails); else this server's."""
    if auth.configured:
        uri = urlsplit(redirect_uri(auth, host, port))
        return f"{uri.scheme}://{uri.netloc}{uri.path.removesuffix('oauth2callback').rstrip('/')}"
    return f"http://{_browser_host(host)}:{port}"


def redirect_uri(auth, host: str, port: int) -> str:
    """Where the provider sends people back: the setting, else this server's /oauth2callback."""
    if auth.redirect_uri:
        return auth.redirect_uri
    return f"http://{_browser_host(host)}:{port}/oauth2callback"


def private_folder() -> Path:
    """A folder only this user can read, outside any project: $XDG_RUNTIME_DIR/kb-search, else
    ~/.cache/kb-search."""
    base = os.environ.get("XDG_RUNTIME_DIR") or str(Path.home() / ".cache")
    folder = Path(base) / "kb-search"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    return folder


def write_auth_secrets(auth, host: str, port: int, folder: Path | None = None) -> Path:
    """Streamlit's `[auth]` secrets for `st.login()` from the sign-in settings, written atomically to a file of
    mode 0600 in `folder` (default `private_folder()`); returns its path."""
    import tomli_w

    folder = folder if folder is not None else private_folder()
    secrets = {"auth": {"redirect_uri": redirect_uri(auth, host, port),
                        "cookie_secret": auth.cookie_secret.get_secret_value(),
                        "client_id": auth.client_id, "client_secret": auth.client_secret.get_secret_value(),
                        "server_metadata_url": auth.discovery_url,
                        # the access token, for the app's re-check of groups at userinfo (app/ui/session.py)
                        "expose_tokens": ["access"]}}
    return atomic_write(folder / f"streamlit-auth-{port}.toml", tomli_w.dumps(secrets), private=True)


def app_environment(index: Path | None, embedder: str | None, reranker: str | None) -> dict[str, str]:
    """This process's environment plus KB_INDEX_DIR / KB_EMBEDDER / KB_RERANKER for the options given (a reranker
    named on the command line serves rather than the promoted one: KB_FOLLOW_ROLLOUT=false)."""
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name, value in (("KB_INDEX_DIR", index), ("KB_EMBEDDER", embedder), ("KB_RERANKER", reranker),
                        ("KB_FOLLOW_ROLLOUT", None if reranker is None else "false")):
        if value is not None:
            env[name] = str(value)
    return env


def _serve(port: int, host: str, index: Path | None, embedder: str | None, reranker: str | None,
           allow_open: bool) -> None:
    from .common import check_exposure, settings_for, warn

    if not 1 <= port <= 65535:
        raise typer.BadParameter(f"must be between 1 and 65535; got {port}", param_hint="--port")
    s = settings_for(index, embedder, reranker)
    check_exposure(s, host, allow_open, for_app=True)
    secrets = None
    if s.auth.configured:
        if host not in ("127.0.0.1", "localhost", "::1") and not s.auth.redirect_uri:
            warn(f"set KB_AUTH_REDIRECT_URI to the address people open (…/oauth2callback); the default "
                 f"{redirect_uri(s.auth, host, port)} only works on this machine")
        secrets = write_auth_secrets(s.auth, host, port)
        typer.echo(f"Sign-in with {s.auth.provider_url} (Streamlit [auth] settings in {secrets})", err=True)
    else:
        typer.echo("Open mode: no sign-in configured, everyone who opens the app sees every document", err=True)
    typer.echo("Starting the app and loading the models and the index; its address follows when it is ready…",
               err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # Become the server (exec, not a child process): Ctrl+C and a supervisor's SIGTERM reach Streamlit itself.
    os.execve(sys.executable, streamlit_command(port, host, secrets, max_upload_mb=s.max_file_mb,
                                                address=app_address(s.auth, host, port)),
              app_environment(index, embedder, reranker))


PortOpt = Annotated[int, typer.Option("--port", help="port to serve the app on")]
HostOpt = Annotated[str, typer.Option("--host", help="address to listen on (0.0.0.0: every interface)")]
IndexOpt = Annotated[Optional[Path], typer.Option("--index", help="index folder [default: settings index_dir]")]
EmbedderOpt = Annotated[Optional[str], typer.Option("--embedder", help="hub name or local folder")]
RerankerOpt = Annotated[Optional[str], typer.Option("--reranker", help="hub name, local folder, or 'none'")]
AllowOpenOpt = Annotated[bool, typer.Option("--allow-open", help="listen beyond loopback with no sign-in: everyone "
                                            "who reaches it sees every document")]


def ui(port: PortOpt = 8501, host: HostOpt = "127.0.0.1", index: IndexOpt = None, embedder: EmbedderOpt = None,
       reranker: RerankerOpt = None, allow_open: AllowOpenOpt = False) -> None:
    """Start the search app (Streamlit): search, raw data, rerank playground; library, tuning, status for admins.
    Sign-in with KB_AUTH_PROVIDER_URL and friends (docs/SECURITY.md); without, open mode on this machine."""
    _serve(port, host, index, embedder, reranker, allow_open)


def demo(port: PortOpt = 8501, host: HostOpt = "127.0.0.1", index: IndexOpt = None, embedder: EmbedderOpt = None,
         reranker: RerankerOpt = None, allow_open: AllowOpenOpt = False,
         docs: Annotated[Path, typer.Option("--docs", help="folder to ingest first")] = SAMPLES) -> None:
    """Ingest the sample knowledge base (unchanged files are skipped), then start the search app on it."""
    from ..components import make_library
    from .common import check_exposure, fail, guard, load_embedder, quiet_libraries, settings_for

    quiet_libraries()
    check_exposure(settings_for(index, embedder, reranker), host, allow_open, for_app=True)  # before minutes of work
    if not docs.is_dir():
        fail(f"--docs {docs}: no such folder; run `kb demo` from a clone of the project, or pass --docs FOLDER")
    s = settings_for(index, embedder)
    index_dir = s.index_dir
    emb = load_embedder(s)
    typer.echo(f"Ingesting {docs} into {index_dir} with {emb.name}…", err=True)
    with guard():
        report = make_library(s, emb).sync([docs])
    for file, reason in report.skipped:
        typer.echo(f"skipped {file}: {reason}", err=True)
    typer.echo(f"{len(report.added)} added, {len(report.updated)} updated, {report.unchanged} unchanged; the index "
               f"holds {report.total_documents} documents, {report.total_chunks} passages", err=True)
    # The app resolves the embedder as this command did (the same fallback, said in its banner).
    _serve(port, host, Path(index_dir), embedder, reranker, allow_open)


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)
    app.command("demo")(demo)
