"""What every `kb` command shares: the consoles, the options that choose index and models, settings with those
overrides applied, and `guard()`, which turns a user's error into one line on stderr and the exit code of its
kind (`app.errors`), never a traceback.

Exit codes: 0 success; 2 a user error (bad argument, missing index or model, index locked); 3 ingest finished
but some files were skipped; 1 an unexpected failure (a bug: please report it with the traceback).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console

from ..errors import EXIT_USER_ERROR, outcome_of
from ..settings import Settings, get_settings

out = Console()
err = Console(stderr=True)

IndexOpt = Annotated[Optional[Path], typer.Option("--index", help="index folder [default: settings index_dir]")]
EmbedderOpt = Annotated[Optional[str], typer.Option("--embedder", help="hub name or local folder")]
RerankerOpt = Annotated[Optional[str], typer.Option("--reranker", help="hub name, local folder, or 'none'")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def fail(message: str, code: int = EXIT_USER_ERROR) -> NoReturn:
    """Print `error: message` on stderr (unwrapped, so a path stays whole) and exit with `code`."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


@contextmanager
def guard() -> Iterator[None]:
    """Errors with a kind (and, here, plain ValueError/TypeError/FileNotFoundError: every argument comes from the
    user) end the command with their message and exit code; anything else is a bug and propagates."""
    try:
        yield
    except Exception as exc:
        outcome = outcome_of(exc, plain_values=True)
        if outcome is None:
            raise
        fail(str(exc), outcome.exit_code)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_exposure(s: Settings, host: str, allow_open: bool, for_app: bool) -> None:
    """Refuse a half-configured sign-in, naming what is missing, and open mode beyond loopback unless allowed:
    with no provider (and, for the API, no API keys) everyone who can reach the port sees every document."""
    missing = s.auth.missing(for_app)
    if missing:
        fail(f"sign-in is half configured: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set; "
             "set {} too, or unset every KB_AUTH_* setting for open mode (docs/SECURITY.md)".format(
                 "it" if len(missing) == 1 else "them"))
    guarded = s.auth.configured or (bool(s.api_keys) and not for_app)
    if guarded or host in LOOPBACK:
        return
    if allow_open or s.allow_open:
        if not for_app and not s.allowed_hosts:  # the API's Host check (app/api/guards.py) answers loopback only
            err.print(f"open mode on {host}: the API answers only requests addressed to localhost; set "
                      "KB_ALLOWED_HOSTS to the names clients use (e.g. '[\"kb.example.com\"]')", highlight=False)
        return
    keys = "" if for_app else " or API keys (api_keys in kb.toml)"
    fail(f"refusing to listen on {host} in open mode: anyone who can reach it would see every document. Set "
         f"KB_AUTH_PROVIDER_URL (sign-in, docs/SECURITY.md){keys}, or pass --allow-open if that is really meant")


def settings_for(index: Path | None = None, embedder: str | None = None, reranker: str | None = None) -> Settings:
    """The settings with the command line's --index / --embedder / --reranker applied."""
    overrides = {k: v for k, v in (("index_dir", index), ("embedder", embedder), ("reranker", reranker))
                 if v is not None}
    if reranker is not None:  # the model named on the command line, not the promoted one
        overrides["follow_rollout"] = False
    s = get_settings()
    return s.model_copy(update=overrides) if overrides else s


def operator():
    """The person at this terminal, as the audit log names them: the CLI is the operator's tool and sees every
    document."""
    import getpass

    from ..identity import Caller

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a bare container)
        user = "unknown"
    return Caller(f"{user} (cli)", None, admin=True, via="cli")


def quiet_libraries() -> None:
    """Library logs at WARNING, ours at ERROR: the CLI prints our warnings itself, once."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for ours in ("retrieval", "rerank", "app"):
        logging.getLogger(ours).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def load_embedder(s: Settings):
    """The embedder the settings name, loaded; its fallback warning printed once."""
    from ..components import load_embedder as load

    with guard():
        emb = load(s)
    if emb.warning:
        warn(emb.warning)
    return emb
