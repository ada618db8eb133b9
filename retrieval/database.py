"""The shared SQL database, opened one way by every store kept in it (the corpus catalog, the control state, the
events store): `KB_DATABASE_URL`, SQLite on one machine, PostgreSQL for several.

A SQLite file is made 0600 in a folder made 0700 before it is opened (it holds everyone's questions and the
corpus's records; SQLite gives its -wal and -shm files the same mode), and every SQLite connection runs in WAL mode
with foreign keys on (the events store's cascading deletes) and waits for another process's write lock rather than
failing at once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from sqlalchemy import Table, create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DatabaseError, IntegrityError

from ingest.files import private_dir, private_file


def safe_url(url: str) -> str:
    """The URL without its password (it may be printed)."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def sqlite_file(url: str) -> Path | None:
    """The database file of a `sqlite:///PATH` URL; None for another database, or SQLite in memory."""
    made = make_url(url)
    if made.get_backend_name() != "sqlite" or made.database in (None, "", ":memory:") or \
            made.database.startswith("file:"):
        return None
    return Path(made.database)


def open_engine(url: str, busy_timeout_ms: int = 5000) -> Engine:
    """An engine on the database at `url` (nothing connects yet); a SQLite file made private and its connections
    set up as the module docstring says, each waiting up to `busy_timeout_ms` for a lock."""
    path = sqlite_file(url)
    if path is not None:
        private_dir(path.parent, chmod=False)
        private_file(path)
    engine = create_engine(url, pool_pre_ping=True, future=True)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _sqlite(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.close()
    return engine


def create_tables(engine: Engine, tables: Iterable[Table]) -> None:
    """Create those of `tables` that are missing, as `retry_create` says."""
    tables = list(tables)

    def create() -> None:
        with engine.begin() as conn:
            for table in tables:
                table.create(conn, checkfirst=True)

    retry_create(create)


def retry_create(create: Callable[[], None], attempts: int = 10) -> None:
    """Run `create` (a transaction that creates tables when missing) until it succeeds. Processes that open a new
    database at the same moment all try: the losers' CREATE fails (SQLite: "already exists" or "database is locked",
    its lock upgrade giving up at once; PostgreSQL: a unique violation in its catalog), and they look again after a
    moment rather than fail. Other database errors, and the last attempt's, are raised."""
    for attempt in range(attempts):
        try:
            create()
            return
        except DatabaseError as exc:
            message = str(exc.orig).lower()
            raced = isinstance(exc, IntegrityError) or "already exists" in message or "database is locked" in message
            if not raced or attempt == attempts - 1:
                raise
            time.sleep(0.02 * (attempt + 1))
