"""Shared control state: a few small named documents in the shared SQL database that every process, on every
machine, reads the same way (the serving reranker's rollout, the user dictionary, the synonyms, the settings saved
by `kb tune --write`).

One table, `kb_control(key, body, version, updated_at, updated_by)`, in the database `KB_DATABASE_URL` names
(SQLite beside the index folder by default, PostgreSQL for several machines), created when missing.

Contract:
- `read(key)` → the `Entry` (body text, version, when, by whom) or None when nothing was ever written;
- `version(key)` → its version or None: one indexed row, what a watcher polls every few seconds;
- `write(key, body, by, expect)` is a compare-and-set: it succeeds only if the entry's version is still `expect`
  (None: the entry must not exist yet), in one statement that the database serialises, so of two writers that read
  the same version one wins and the other gets KbError("conflict"): a write is refused, never lost;
- `lock(name)` is held by one process at a time across processes and machines, never waits (KbError conflict),
  and is released when its holder ends, even killed: a PostgreSQL advisory lock on a connection kept for the
  duration; on SQLite (one machine by nature) an exclusive `flock` on a file beside the database.

A database that cannot be reached raises KbError("not_ready") naming it (password hidden).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from retrieval.database import create_tables, open_engine, safe_url, sqlite_file

from ..errors import KbError

KEY_MAX = 128

metadata = MetaData()
control = Table(
    "kb_control", metadata,
    Column("key", String(KEY_MAX), primary_key=True),
    Column("body", Text, nullable=False),
    Column("version", Integer, nullable=False),  # 1 for the first write, +1 for each one after
    Column("updated_at", Float, nullable=False),  # seconds since the epoch, UTC
    Column("updated_by", String(256), nullable=False),
)


@dataclass(frozen=True)
class Entry:
    key: str
    body: str
    version: int
    updated_at: float
    updated_by: str


class ControlStore:
    """The `kb_control` table of the database at `url` (see the module docstring). Build with `control_store(url)`:
    one per database per process, sharing its connection pool."""

    def __init__(self, url: str):
        self.url = url
        self._engine: Engine | None = None
        self._open_lock = threading.Lock()

    @property
    def where(self) -> str:
        return safe_url(self.url)

    def _failed(self, doing: str, exc: SQLAlchemyError) -> KbError:
        return KbError("not_ready", f"the shared database {self.where} (KB_DATABASE_URL) could not {doing}: "
                                    f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")

    def engine(self) -> Engine:
        """The connected engine, the table created when missing (once per process)."""
        with self._open_lock:
            if self._engine is not None:
                return self._engine
            engine = open_engine(self.url)  # a SQLite file made private: the events store shares it
            try:
                create_tables(engine, [control])
            except SQLAlchemyError as exc:
                engine.dispose()
                raise self._failed("be opened", exc) from exc
            self._engine = engine
            return engine

    # ---- reading -------------------------------------------------------------------------------------------
    def read(self, key: str) -> Entry | None:
        """The entry `key`, or None when it was never written."""
        try:
            with self.engine().connect() as conn:
                row = conn.execute(select(control).where(control.c.key == key)).first()
        except SQLAlchemyError as exc:
            raise self._failed(f"read {key!r}", exc) from exc
        return None if row is None else Entry(row.key, row.body, row.version, row.updated_at, row.updated_by)

    def version(self, key: str) -> int | None:
        """The version of `key` (None: never written): what changes with every write, cheap to poll."""
        try:
            with self.engine().connect() as conn:
                return conn.execute(select(control.c.version).where(control.c.key == key)).scalar()
        except SQLAlchemyError as exc:
            raise self._failed(f"read the version of {key!r}", exc) from exc

    # ---- writing -------------------------------------------------------------------------------------------
    def write(self, key: str, body: str, by: str, expect: int | None) -> Entry:
        """Replace `key`'s body if its version is still `expect` (None: create it; it must not exist); returns the
        new entry. KbError conflict when someone else wrote first: read it again and redo the change."""
        if not isinstance(key, str) or not 0 < len(key) <= KEY_MAX:
            raise KbError("validation", f"key must be a name of 1 to {KEY_MAX} characters; got {key!r}")
        if not isinstance(body, str):
            raise KbError("validation", f"body of {key!r} must be text; got {type(body).__name__}")
        at, by = time.time(), (by or "unknown")[:256]
        try:
            with self.engine().begin() as conn:
                if expect is None:
                    conn.execute(insert(control).values(key=key, body=body, version=1, updated_at=at, updated_by=by))
                    version = 1
                else:  # one conditional UPDATE: the database lets one of two racing writers match
                    done = conn.execute(update(control).where(control.c.key == key, control.c.version == expect)
                                        .values(body=body, version=expect + 1, updated_at=at, updated_by=by))
                    if done.rowcount != 1:
                        raise self._conflict(key, expect)
                    version = expect + 1
        except IntegrityError:  # the row appeared meanwhile: someone else created it first
            raise self._conflict(key, expect) from None
        except SQLAlchemyError as exc:
            raise self._failed(f"write {key!r}", exc) from exc
        return Entry(key, body, version, at, by)

    def _conflict(self, key: str, expect: int | None) -> KbError:
        now = self.read(key)
        found = f"version {now.version}, written by {now.updated_by}" if now else "no entry"
        return KbError("conflict", f"{key!r} in the shared database was changed by someone else meanwhile (expected "
                                   f"{'no entry' if expect is None else f'version {expect}'}, found {found}); "
                                   "nothing was written: look at it again and redo the change")

    # ---- one writer at a time ------------------------------------------------------------------------------
    @contextmanager
    def lock(self, name: str, busy: str) -> Iterator[None]:
        """Hold the lock `name` for the duration (see the module docstring); never waits: KbError conflict with
        `busy` (what to tell the user) when another process holds it."""
        engine = self.engine()
        if engine.dialect.name == "postgresql":
            with self._pg_lock(engine, name, busy):
                yield
            return
        path = sqlite_file(self.url)
        if path is None:  # SQLite in memory: one process by definition; other databases: the version check guards
            yield
            return
        fd = os.open(path.with_name(f"{path.name}.{name}.lock"), os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise KbError("conflict", busy) from None
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextmanager
    def _pg_lock(self, engine: Engine, name: str, busy: str) -> Iterator[None]:
        lock_id = int.from_bytes(hashlib.sha256(f"kb:{name}".encode()).digest()[:8], "big", signed=True)
        try:
            conn = engine.connect()
            got = conn.execute(text("SELECT pg_try_advisory_lock(:id)"), {"id": lock_id}).scalar()
            conn.commit()
        except SQLAlchemyError as exc:
            raise self._failed(f"take the lock {name!r}", exc) from exc
        try:
            if not got:
                raise KbError("conflict", busy)
            yield
        finally:
            try:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
                    conn.commit()
            finally:
                conn.close()

    def close(self) -> None:
        with self._open_lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None


_stores: dict[str, ControlStore] = {}
_stores_lock = threading.Lock()


def control_store(url: str) -> ControlStore:
    """The process's one `ControlStore` for the database at `url` (connected at first use)."""
    with _stores_lock:
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = ControlStore(url)
        return store
