"""The catalog of a shared corpus, in the shared SQL database: which revision is published, the document records of
every revision still readable, and the one writer's lease.

A corpus kept in Milvus (`retrieval.shared`) has no index folder: its chunks live in a Milvus collection and what a
folder's manifest, `documents.jsonl`, `CURRENT` and `.lock` said lives here instead, so that any number of serving
processes on any number of machines read the same thing::

    kb_revisions  (corpus, revision) → manifest (JSON), published_at        the newest row is the published one
    kb_documents  (corpus, doc_id, born) → died, record (JSON)              a document as of revision `born`, until
                                                                            the revision `died` replaced or removed it
    kb_leases     name → holder, expires_at                                 who may write, until when

Publishing revision R+1 is one transaction: the documents it retires get `died = R+1`, the ones it writes are
inserted with `born = R+1`, and its revision row is inserted; a reader at R keeps reading the rows alive at R. A
writer that dies before that commit leaves the catalog exactly as it was. SQLite serves one machine (the default),
PostgreSQL several. A writer's lease lasts LEASE_S after its last renewal; one whose holder was a process of this
machine that no longer runs is taken at once (a killed `kb ingest` does not make the next one wait).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DatabaseError, IntegrityError

from .database import create_tables, open_engine, safe_url

log = logging.getLogger(__name__)

LEASE_S = 30.0  # a writer's lease lasts this long unless renewed (a holder that dies frees it within this)
RENEW_S = 10.0  # how often a live writer renews it

metadata = MetaData()
revisions = Table("kb_revisions", metadata,
                  Column("corpus", String(255), primary_key=True),
                  Column("revision", Integer, primary_key=True, autoincrement=False),
                  Column("manifest", Text, nullable=False),
                  Column("published_at", Float, nullable=False))
documents = Table("kb_documents", metadata,
                  Column("corpus", String(255), primary_key=True),
                  Column("doc_id", String(4096), primary_key=True),
                  Column("born", Integer, primary_key=True, autoincrement=False),
                  Column("died", Integer, nullable=True),
                  Column("record", Text, nullable=False))
leases = Table("kb_leases", metadata,
               Column("name", String(255), primary_key=True),
               Column("holder", String(255), nullable=False),
               Column("expires_at", Float, nullable=False))


class CatalogError(RuntimeError):
    """The shared database cannot be reached or refused a write. The message names the database and the fix."""

    kind = "not_ready"  # app.errors maps it to an HTTP status and an exit code


class WriterBusy(RuntimeError):
    """Another writer holds the corpus's lease."""

    kind = "conflict"


class LeaseLost(RuntimeError):
    """This writer's lease expired and someone else may be writing: its revision is not published."""

    kind = "conflict"


def _dead_here(holder: str) -> bool:
    """Whether a lease holder (`host:pid:nonce`) was a process of this machine that no longer runs."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


@dataclass(frozen=True)
class Revision:
    number: int
    manifest: dict[str, Any]
    published_at: float


class Catalog:
    """The catalog tables at `url` (an SQLAlchemy URL), created when missing. Thread-safe; one per process is
    enough (`Catalog.at`)."""

    _shared: dict[str, Catalog] = {}
    _shared_lock = threading.Lock()

    def __init__(self, url: str):
        self.url = url
        try:
            # a publish, one transaction per ingest, may wait for the lock a little longer than an event write
            self.engine = open_engine(url, busy_timeout_ms=10_000)
        except OSError as exc:  # the folder of a SQLite file cannot be made or made private
            raise CatalogError(f"the shared database at {self.where} cannot be opened ({exc}); check "
                               "KB_DATABASE_URL") from exc
        try:
            create_tables(self.engine, metadata.sorted_tables)
        except DatabaseError as exc:
            raise CatalogError(f"the shared database at {self.where} cannot be reached ({exc.orig}); check "
                               "KB_DATABASE_URL and that the database is up") from exc

    @classmethod
    def at(cls, url: str) -> Catalog:
        """The process's catalog for `url` (one connection pool per database)."""
        with cls._shared_lock:
            if url not in cls._shared:
                cls._shared[url] = cls(url)
            return cls._shared[url]

    @property
    def where(self) -> str:
        return safe_url(self.url)

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except IntegrityError:
            raise
        except DatabaseError as exc:  # cannot connect, or not a database
            raise CatalogError(f"the shared database at {self.where} failed ({exc.orig}); check KB_DATABASE_URL "
                               "and that the database is up") from exc

    # ---- reading -------------------------------------------------------------------------------------------
    def current(self, corpus: str) -> Revision | None:
        """The published revision of `corpus` (None: nothing published yet)."""
        with self._tx() as conn:
            row = conn.execute(select(revisions).where(revisions.c.corpus == corpus)
                               .order_by(revisions.c.revision.desc()).limit(1)).first()
        return None if row is None else Revision(row.revision, json.loads(row.manifest), row.published_at)

    def current_number(self, corpus: str) -> int | None:
        """Just the published revision's number: what watchers poll (one indexed lookup)."""
        with self._tx() as conn:
            return conn.execute(select(func.max(revisions.c.revision)).where(revisions.c.corpus == corpus)).scalar()

    def documents(self, corpus: str, revision: int) -> list[dict[str, Any]]:
        """The document records alive at `revision`, each with the revision that wrote it (`born`)."""
        alive = and_(documents.c.corpus == corpus, documents.c.born <= revision,
                     or_(documents.c.died.is_(None), documents.c.died > revision))
        with self._tx() as conn:
            rows = conn.execute(select(documents.c.born, documents.c.record).where(alive)).all()
        return [{**json.loads(r.record), "born": r.born} for r in rows]

    # ---- writing -------------------------------------------------------------------------------------------
    def publish(self, corpus: str, revision: int, manifest: dict[str, Any], written: list[dict[str, Any]],
                retired: list[str], holder: str | None) -> None:
        """Publish `revision` in one transaction: the live records of the documents in `retired` (and of those in
        `written`) die at it, `written` are born at it, and its manifest becomes the published one. LeaseLost when
        `holder` no longer holds the corpus's lease; WriterBusy when another revision `revision` was published."""
        now = time.time()
        with self._tx() as conn:
            if holder is not None:
                held = conn.execute(select(leases.c.holder, leases.c.expires_at)
                                    .where(leases.c.name == corpus)).first()
                if held is None or held.holder != holder:
                    raise LeaseLost(f"this writer's lease on {corpus!r} expired and another writer took it; nothing "
                                    "was published, run the ingest again")
            ids = list(dict.fromkeys([*retired, *(r["doc_id"] for r in written)]))
            for start in range(0, len(ids), 500):
                conn.execute(update(documents)
                             .where(documents.c.corpus == corpus, documents.c.doc_id.in_(ids[start:start + 500]),
                                    documents.c.died.is_(None))
                             .values(died=revision))
            if written:
                conn.execute(insert(documents), [
                    {"corpus": corpus, "doc_id": r["doc_id"], "born": revision, "died": None,
                     "record": json.dumps(r, ensure_ascii=False)} for r in written])
            try:
                conn.execute(insert(revisions).values(corpus=corpus, revision=revision,
                                                      manifest=json.dumps(manifest, ensure_ascii=False),
                                                      published_at=now))
            except IntegrityError as exc:
                raise WriterBusy(f"revision {revision} of {corpus!r} was published by another writer meanwhile; "
                                 "nothing was published, run the ingest again") from exc

    def forget_before(self, corpus: str, revision: int) -> None:
        """Drop what no reader at `revision` or later can see: records that died at or before it, and the
        revision rows older than the ten before it."""
        with self._tx() as conn:
            conn.execute(delete(documents).where(documents.c.corpus == corpus, documents.c.died.is_not(None),
                                                 documents.c.died <= revision))
            conn.execute(delete(revisions).where(revisions.c.corpus == corpus, revisions.c.revision < revision - 10))

    def drop(self, corpus: str) -> None:
        """Forget the corpus entirely (a rebuild starts over)."""
        with self._tx() as conn:
            conn.execute(delete(documents).where(documents.c.corpus == corpus))
            conn.execute(delete(revisions).where(revisions.c.corpus == corpus))

    # ---- the writer's lease ----------------------------------------------------------------------------------
    def acquire(self, name: str, holder: str, ttl: float = LEASE_S) -> bool:
        """Take the lease `name` for `holder` when it is free or expired (or already `holder`'s); whether it did."""
        now = time.time()
        with self._tx() as conn:
            taken = conn.execute(update(leases).where(leases.c.name == name,
                                                      or_(leases.c.expires_at < now, leases.c.holder == holder))
                                 .values(holder=holder, expires_at=now + ttl)).rowcount
            if taken:
                return True
            held = conn.execute(select(leases.c.holder).where(leases.c.name == name)).first()
            if held is not None:
                if not _dead_here(held.holder):
                    return False
                # its holder was a process of this machine that is gone (killed): no need to wait for the expiry
                log.warning("taking the writer's lease on %s from %s, which no longer runs", name, held.holder)
                return bool(conn.execute(update(leases).where(leases.c.name == name, leases.c.holder == held.holder)
                                         .values(holder=holder, expires_at=now + ttl)).rowcount)
            try:
                with conn.begin_nested():
                    conn.execute(insert(leases).values(name=name, holder=holder, expires_at=now + ttl))
            except IntegrityError:
                return False  # another writer inserted it first
            return True

    def release(self, name: str, holder: str) -> None:
        with self._tx() as conn:
            conn.execute(delete(leases).where(leases.c.name == name, leases.c.holder == holder))

    def holder(self, name: str) -> tuple[str, float] | None:
        """(who holds the lease, seconds it still runs) or None when it is free."""
        with self._tx() as conn:
            row = conn.execute(select(leases.c.holder, leases.c.expires_at).where(leases.c.name == name)).first()
        if row is None or row.expires_at < time.time():
            return None
        return row.holder, row.expires_at - time.time()

    @contextmanager
    def lease(self, name: str, ttl: float = LEASE_S, renew: float = RENEW_S) -> Iterator[str]:
        """Hold the writer's lease `name` while the block runs, renewed in the background; WriterBusy at once when
        another live writer holds it. Yields this holder's id (for `publish`)."""
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        if not self.acquire(name, holder, ttl):
            held = self.holder(name)
            who = f" ({held[0]}, for {held[1]:.0f} s more unless it renews)" if held else ""
            raise WriterBusy(f"corpus {name!r} is being written by another process{who}; wait for that ingest to "
                             "finish and try again")
        stop = threading.Event()

        def keep() -> None:
            while not stop.wait(renew):
                try:
                    if not self.acquire(name, holder, ttl):
                        log.error("lost the writer's lease on %s to another writer", name)
                        return
                except CatalogError as exc:  # the next renewal may succeed; publish checks the lease anyway
                    log.warning("could not renew the writer's lease on %s: %s", name, exc)

        renewer = threading.Thread(target=keep, name="kb-lease", daemon=True)
        renewer.start()
        try:
            yield holder
        finally:
            stop.set()
            renewer.join(timeout=5)
            try:
                self.release(name, holder)
            except CatalogError as exc:  # it expires by itself
                log.warning("could not release the writer's lease on %s: %s", name, exc)
