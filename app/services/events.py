"""The events store: what people ask and what they think of the answers, for analytics, evaluation and tuning.

One `EventLog` per process over the shared SQL database: SQLite by default (a file beside the index), any SQLAlchemy
URL in `KB_DATABASE_URL` (PostgreSQL when several API replicas share it; `KB_EVENTS_URL` is its old name). The
schema carries a version; opening a database applies the migrations it lacks, in one transaction, and refuses a
database written by a newer kb.

- **Searches** are recorded by `SearchService.search` through a bounded queue that one background thread writes
  in batches: recording never waits for the database and never fails a search. A full queue drops the event and
  counts it (`stats.dropped`); a database that cannot be written (unreachable, locked) logs a warning and counts
  it (`stats.write_errors`). Per search: `query_id`, time, who (a keyed hash of the user id, or the id itself with
  `store_user`), groups, query and its normalised text, parameters, the shown chunks with their scores, timings,
  and whether any result passed the threshold.
- **Feedback** (`useful` true/false on a chunk a search showed, or "none of these answers" with no chunk) goes
  through the same writer, in order after its search, and the caller waits for it (a few seconds at most): the
  answer says it was recorded. Unknown `query_id` → not_found, a chunk that search did not show → validation,
  someone else's search → forbidden unless admin.
- **Retention**: searches older than `retention_days` (and their feedback) are purged when the store opens and
  once a day after.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import queue
import re
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ingest.files import private_dir
from retrieval.database import open_engine, retry_create, safe_url

from ..errors import KbError
from ..identity import Caller

if TYPE_CHECKING:
    from .results import SearchResult

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DAY = 86_400.0
RECENT = 4096  # searches kept in memory to check feedback before (and without) a database read
FEEDBACK_WAIT_S = 5.0
BATCH = 500

metadata = MetaData()
schema = Table("kb_schema", metadata, Column("version", Integer, nullable=False))
searches = Table(
    "kb_searches", metadata,
    Column("query_id", String(32), primary_key=True),
    Column("at", Float, nullable=False, index=True),  # seconds since the epoch, UTC
    Column("who", String(256), nullable=False),
    Column("groups", JSON, nullable=True),  # None: every document
    Column("query", Text, nullable=False),
    Column("normalized", String(512), nullable=False, index=True),
    Column("params", JSON, nullable=False),
    Column("shown", JSON, nullable=False),  # [{chunk_id, doc_id, rank, score, raw_score}]
    Column("timings", JSON, nullable=False),
    Column("total_ms", Float, nullable=False),
    Column("answered", Boolean, nullable=False),  # a result passed the threshold
    Column("top_score", Float, nullable=True),
    Column("reranker", String(512), nullable=True),
    Column("index_version", String(128), nullable=False),
)
feedback = Table(
    "kb_feedback", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("query_id", String(32), ForeignKey("kb_searches.query_id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("at", Float, nullable=False, index=True),
    Column("who", String(256), nullable=False),
    Column("chunk_id", String(512), nullable=True),  # None: "none of these answers my question"
    Column("doc_id", String(512), nullable=True),
    Column("useful", Boolean, nullable=False),
    Column("comment", Text, nullable=True),
)


def _migrate_1(conn: Connection) -> None:
    searches.create(conn, checkfirst=True)
    feedback.create(conn, checkfirst=True)


MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _migrate_1}  # version → what brings the schema to it

_PUNCT = re.compile(r"[\s\W_]+", re.UNICODE)


def normalize_query(text: str) -> str:
    """The form queries are grouped by: NFKC, lower case, punctuation (Chinese too) and runs of space folded."""
    return _PUNCT.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()[:512]


@dataclass
class EventStats:
    queued: int = 0
    written: int = 0
    dropped: int = 0  # the queue was full
    write_errors: int = 0  # events lost to a database that could not be written
    feedback: int = 0


@dataclass(frozen=True)
class SearchEvent:
    """One recorded search as `EventLog.history` gives it: who asked what, when, whether a result passed the
    threshold, the documents its asker gave a thumbs-up (`liked`), and whether they gave a thumbs-down or said
    "none of these answers" (`disliked`)."""

    query_id: str
    at: float
    who: str
    query: str
    normalized: str
    answered: bool
    liked: tuple[str, ...] = ()
    disliked: bool = False


@dataclass(frozen=True)
class _Search:
    who: str
    shown: frozenset[str]
    doc_of: dict[str, str]
    reranker: str | None = None  # the model that scored it


class EventLog:
    """See the module docstring. `who_key` keys the user-id hash; `store_user` keeps the raw id instead."""

    def __init__(self, url: str, who_key: bytes, store_user: bool = False, retention_days: int = 90,
                 queue_size: int = 10_000, clock: Callable[[], float] = time.time):
        if retention_days < 1:
            raise ValueError(f"events_retention_days must be at least 1; got {retention_days}")
        self.url = url
        self._key, self.store_user, self.retention_days = who_key, store_user, retention_days
        self._clock = clock
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._recent: OrderedDict[str, _Search] = OrderedDict()
        self._recent_lock = threading.Lock()
        self.stats = EventStats()
        self._stats_lock = threading.Lock()
        self._engine: Engine | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._purged_at = 0.0

    # ---- life ------------------------------------------------------------------------------------------------
    def open(self) -> EventLog:
        """Connect, bring the schema up to date, purge what retention says, start the writer. A database that
        cannot be opened is reported (KbError not_ready) and nothing is started. A SQLite file is created 0600 in
        a folder made 0700 (it holds everyone's questions); SQLite gives its -wal and -shm files the same mode."""
        engine = open_engine(self.url)
        try:
            retry_create(lambda: self._migrate(engine))
        except SQLAlchemyError as exc:
            engine.dispose()
            raise KbError("not_ready", f"the events database {safe_url(self.url)} cannot be opened: "
                                       f"{type(exc).__name__}: {str(exc)[:200]}") from exc
        self._engine = engine
        self.purge()
        self._thread = threading.Thread(target=self._write_loop, name="kb-events", daemon=True)
        self._thread.start()
        return self

    def _migrate(self, engine: Engine) -> None:
        """Bring the schema to SCHEMA_VERSION in one transaction; a newer schema is refused (KbError conflict)."""
        with engine.begin() as conn:
            schema.create(conn, checkfirst=True)
            version = int(conn.execute(select(func.max(schema.c.version))).scalar() or 0)
            if version > SCHEMA_VERSION:
                raise KbError("conflict", f"the events database {safe_url(self.url)} has schema version {version}; "
                                          f"this kb knows {SCHEMA_VERSION}: upgrade kb, or point KB_DATABASE_URL "
                                          "elsewhere")
            for v in range(version + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[v](conn)
            if version < SCHEMA_VERSION:
                conn.execute(delete(schema))
                conn.execute(insert(schema).values(version=SCHEMA_VERSION))

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, stop the writer, release the database (once; later calls do nothing)."""
        if self._thread is None or self._stopping.is_set():
            return
        self.flush(timeout)
        self._stopping.set()
        self._thread.join(timeout)
        self._engine.dispose()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written (or given up); False on timeout, or when the store is
        not open."""
        if self._thread is None or not self._thread.is_alive():
            return False
        done: Future = Future()
        try:
            self._queue.put(("flush", done), timeout=timeout)
        except queue.Full:
            return False
        try:
            done.result(timeout)
            return True
        except TimeoutError:
            return False

    def _count(self, name: str, n: int = 1) -> None:
        with self._stats_lock:
            setattr(self.stats, name, getattr(self.stats, name) + n)

    # ---- who ------------------------------------------------------------------------------------------------
    def who(self, caller: Caller) -> str:
        if self.store_user:
            return caller.who[:256]
        return "h:" + hmac.new(self._key, caller.who.encode("utf-8"), hashlib.sha256).hexdigest()[:40]

    # ---- recording --------------------------------------------------------------------------------------------
    def record_search(self, result: SearchResult, caller: Caller) -> None:
        """Queue one search (never blocks, never raises: a full queue drops it and counts the drop)."""
        shown = result.results
        # best bets first, rank 0 and no score: judged like any result shown, and told apart by `best_bet`
        pins = [{"chunk_id": p.chunk.chunk_id, "doc_id": p.chunk.doc_id, "rank": 0, "score": None, "raw_score": None,
                 "best_bet": p.bet_id, "label": p.label} for p in result.pinned]
        row = {"query_id": result.query_id, "at": self._clock(), "who": self.who(caller),
               "groups": None if caller.groups is None else list(caller.groups), "query": result.query[:4000],
               "normalized": normalize_query(result.query), "params": result.params,
               "shown": pins + [{"chunk_id": r.hit.chunk.chunk_id, "doc_id": r.hit.chunk.doc_id, "rank": r.rank,
                                 "score": r.score, "raw_score": r.raw_score} for r in shown],
               "timings": result.timings_ms, "total_ms": float(result.timings_ms.get("total", 0.0)),
               "answered": bool(shown),
               "top_score": max((r.score for r in shown if r.score is not None), default=None),
               "reranker": result.reranker, "index_version": result.index_version}
        with self._recent_lock:
            self._recent[result.query_id] = _Search(row["who"], frozenset(s["chunk_id"] for s in row["shown"]),
                                                    {s["chunk_id"]: s["doc_id"] for s in row["shown"]},
                                                    result.reranker)
            while len(self._recent) > RECENT:
                self._recent.popitem(last=False)
        try:
            self._queue.put_nowait(("search", row))
            self._count("queued")
        except queue.Full:
            self._count("dropped")
            log.warning("events queue full: search %s not recorded", result.query_id)

    def record_feedback(self, caller: Caller, query_id: str, chunk_id: str | None, useful: bool,
                        comment: str | None = None) -> int:
        """Record a judgment on a chunk the search `query_id` showed (`chunk_id` None: none of its results
        answers the question); returns its id. KbError: not_found, validation, forbidden, not_ready."""
        found = self._search(query_id)
        if found is None:
            raise KbError("not_found", f"no search with query_id {query_id!r} (searches are kept "
                                       f"{self.retention_days} days)")
        if found.who != self.who(caller) and not caller.admin:
            raise KbError("forbidden", f"search {query_id} was run by someone else; judge your own searches")
        if chunk_id is not None and chunk_id not in found.shown:
            raise KbError("validation", f"chunk_id {chunk_id!r} was not among the results of search {query_id}; "
                                        "send one of the chunk_ids it returned, or none for 'none of these answers'")
        if chunk_id is None and useful:
            raise KbError("validation", "useful must be false when no chunk_id is given ('none of these answers')")
        row = {"query_id": query_id, "at": self._clock(), "who": self.who(caller), "chunk_id": chunk_id,
               "doc_id": found.doc_of.get(chunk_id) if chunk_id else None, "useful": bool(useful),
               "comment": (comment or None) and comment[:2000]}
        done: Future = Future()
        try:
            self._queue.put(("feedback", (row, done)), timeout=FEEDBACK_WAIT_S)
            return int(done.result(FEEDBACK_WAIT_S))
        except (queue.Full, TimeoutError) as exc:
            raise KbError("not_ready", "the events database is busy; send the judgment again shortly",
                          headers={"Retry-After": "2"}) from exc
        except SQLAlchemyError as exc:
            raise KbError("not_ready", f"the events database could not record the judgment ({type(exc).__name__})",
                          headers={"Retry-After": "5"}) from exc

    def _search(self, query_id: str) -> _Search | None:
        with self._recent_lock:
            found = self._recent.get(query_id)
        if found is not None or self._engine is None:
            return found
        try:
            with self._engine.connect() as conn:
                row = conn.execute(select(searches.c.who, searches.c.shown, searches.c.reranker)
                                   .where(searches.c.query_id == query_id)).first()
        except SQLAlchemyError as exc:
            raise KbError("not_ready", f"the events database cannot be read ({type(exc).__name__})") from exc
        if row is None:
            return None
        return _Search(row.who, frozenset(s["chunk_id"] for s in row.shown),
                       {s["chunk_id"]: s["doc_id"] for s in row.shown}, row.reranker)

    def scored_by(self, query_id: str) -> str | None:
        """The reranker that scored the search `query_id` (None: recall-only, or no such search)."""
        found = self._search(query_id)
        return found.reranker if found is not None else None

    # ---- the writer -------------------------------------------------------------------------------------------
    def _write_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                first = self._queue.get(timeout=0.5)
            except queue.Empty:
                self._maybe_purge()
                continue
            items = [first]
            while len(items) < BATCH:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write(items)
            self._maybe_purge()

    def _write(self, items: list[tuple[str, Any]]) -> None:
        rows = [payload for kind, payload in items if kind == "search"]
        if rows:
            try:
                with self._engine.begin() as conn:
                    conn.execute(insert(searches), rows)
                self._count("written", len(rows))
            except IntegrityError:  # one bad row (a query_id seen twice) must not cost the others
                for row in rows:
                    self._write_searches([row])
            except SQLAlchemyError as exc:
                self._count("write_errors", len(rows))
                log.warning("events database %s: %d searches not recorded (%s: %s)", safe_url(self.url), len(rows),
                            type(exc).__name__, str(exc)[:200])
        for kind, payload in items:
            if kind == "feedback":
                row, done = payload
                try:
                    with self._engine.begin() as conn:
                        new_id = conn.execute(insert(feedback).values(**row)).inserted_primary_key[0]
                    self._count("feedback")
                    done.set_result(new_id)
                except SQLAlchemyError as exc:
                    done.set_exception(exc)
            elif kind == "flush":
                payload.set_result(True)

    def _write_searches(self, rows: list[dict[str, Any]]) -> None:
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(searches), rows)
            self._count("written", len(rows))
        except SQLAlchemyError as exc:
            self._count("write_errors", len(rows))
            log.warning("events database %s: %d searches not recorded (%s: %s)", safe_url(self.url), len(rows),
                        type(exc).__name__, str(exc)[:200])

    def _maybe_purge(self) -> None:
        if self._clock() - self._purged_at >= DAY:
            self.purge()

    def purge(self) -> int:
        """Delete searches older than the retention (their feedback goes with them); returns how many."""
        cutoff = self._clock() - self.retention_days * DAY
        self._purged_at = self._clock()
        try:
            with self._engine.begin() as conn:
                old = select(searches.c.query_id).where(searches.c.at < cutoff)
                conn.execute(delete(feedback).where(feedback.c.query_id.in_(old)))
                return conn.execute(delete(searches).where(searches.c.at < cutoff)).rowcount or 0
        except SQLAlchemyError as exc:
            log.warning("events database %s could not be purged: %s", safe_url(self.url), exc)
            return 0

    # ---- reading ----------------------------------------------------------------------------------------------
    def judgments(self) -> Iterator[dict[str, Any]]:
        """Every judgment with its query (and the asker's groups), oldest first."""
        with self._engine.connect() as conn:
            q = (select(feedback.c.query_id, feedback.c.chunk_id, feedback.c.doc_id, feedback.c.useful,
                        feedback.c.comment, feedback.c.at, searches.c.query, searches.c.groups)
                 .join(searches, feedback.c.query_id == searches.c.query_id).order_by(feedback.c.id))
            for r in conn.execute(q):
                yield {"query_id": r.query_id, "query": r.query, "groups": r.groups, "chunk_id": r.chunk_id,
                       "doc_id": r.doc_id, "useful": r.useful, "comment": r.comment, "at": r.at}

    def history(self, days: int = 30) -> list[SearchEvent]:
        """Every search of the last `days` with what its asker thought of it, by asker then time: the material
        `app.services.suggestions` learns vocabulary from."""
        if days < 1:
            raise KbError("validation", f"days must be at least 1; got {days}")
        since = self._clock() - days * DAY
        with self._engine.connect() as conn:
            rows = conn.execute(select(searches.c.query_id, searches.c.at, searches.c.who, searches.c.query,
                                       searches.c.normalized, searches.c.answered)
                                .where(searches.c.at >= since)).all()
            fb = conn.execute(select(feedback.c.query_id, feedback.c.who, feedback.c.doc_id, feedback.c.useful)
                              .join(searches, feedback.c.query_id == searches.c.query_id)
                              .where(searches.c.at >= since).order_by(feedback.c.id)).all()
        liked: dict[str, list[str]] = {}
        disliked: set[str] = set()
        askers = {r.query_id: r.who for r in rows}
        for f in fb:
            if f.who != askers.get(f.query_id):  # an admin judging someone else's search says nothing of theirs
                continue
            if f.useful and f.doc_id:
                liked.setdefault(f.query_id, []).append(f.doc_id)
            elif not f.useful:
                disliked.add(f.query_id)
        return sorted((SearchEvent(r.query_id, r.at, r.who, r.query, r.normalized, bool(r.answered),
                                   tuple(dict.fromkeys(liked.get(r.query_id, ()))), r.query_id in disliked)
                       for r in rows), key=lambda e: (e.who, e.at, e.query_id))

    def analytics(self, days: int = 30, low_score: float = 0.7, top: int = 20) -> dict[str, Any]:
        """Searches per day, latency, the share with no answer, top queries, the content gaps (no-answer and
        low-score queries by normalised text), thumbs per document, searches, answers and thumbs per reranker
        model (`by_reranker`: how a canary fares against the serving model), and per best bet how many searches
        showed it and its thumbs (`best_bets`) over the last `days`."""
        from ..quality.latency import percentiles

        if days < 1:
            raise KbError("validation", f"days must be at least 1; got {days}")
        since = self._clock() - days * DAY
        with self._engine.connect() as conn:
            rows = conn.execute(select(searches.c.at, searches.c.total_ms, searches.c.answered,
                                       searches.c.top_score, searches.c.normalized, searches.c.query,
                                       searches.c.reranker, searches.c.shown)
                                .where(searches.c.at >= since)).all()
            fb = conn.execute(select(feedback.c.doc_id, feedback.c.chunk_id, feedback.c.useful, searches.c.reranker,
                                     searches.c.shown)
                              .join(searches, feedback.c.query_id == searches.c.query_id)
                              .where(feedback.c.at >= since)).all()
        per_day: dict[str, dict[str, int]] = {}
        groups: dict[str, dict[str, Any]] = {}
        for r in rows:
            day = time.strftime("%Y-%m-%d", time.gmtime(r.at))
            d = per_day.setdefault(day, {"searches": 0, "no_answer": 0})
            d["searches"] += 1
            d["no_answer"] += not r.answered
            g = groups.setdefault(r.normalized, {"query": r.query, "count": 0, "no_answer": 0, "low_score": 0,
                                                 "last": 0.0})
            g["count"] += 1
            g["no_answer"] += not r.answered
            g["low_score"] += bool(r.answered and r.top_score is not None and r.top_score < low_score)
            if r.at >= g["last"]:
                g["query"], g["last"] = r.query, r.at  # the latest wording stands for the group
        by_count = sorted(groups.values(), key=lambda g: (-g["count"], g["query"]))

        def listed(key: str) -> list[dict[str, Any]]:
            picked = sorted((g for g in groups.values() if g[key]), key=lambda g: (-g[key], g["query"]))[:top]
            return [{"query": g["query"], "count": g[key], "searches": g["count"],
                     "last": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(g["last"]))} for g in picked]

        models: dict[str, dict[str, Any]] = {}

        def model(name: str | None) -> dict[str, Any]:
            return models.setdefault(name or "none", {"searches": 0, "no_answer": 0, "total_ms": 0.0, "up": 0,
                                                      "down": 0, "none_answers": 0})

        for r in rows:
            m = model(r.reranker)
            m["searches"] += 1
            m["no_answer"] += not r.answered
            m["total_ms"] += r.total_ms
        docs: dict[str, dict[str, int]] = {}
        up = down = none = 0
        for f in fb:
            m = model(f.reranker)
            if f.chunk_id is None:
                none += 1
                m["none_answers"] += 1
                continue
            m["up" if f.useful else "down"] += 1
            d = docs.setdefault(f.doc_id or "", {"up": 0, "down": 0})
            d["up" if f.useful else "down"] += 1
            up, down = up + f.useful, down + (not f.useful)
        answered = sum(r.answered for r in rows)
        return {"days": days, "searches": len(rows),
                "per_day": [{"day": k, **v} for k, v in sorted(per_day.items())],
                "latency_ms": percentiles([r.total_ms for r in rows]),
                "no_answer_share": round(1 - answered / len(rows), 4) if rows else None,
                "feedback": {"up": up, "down": down, "none_answers": none},
                "top_queries": [{"query": g["query"], "count": g["count"]} for g in by_count[:top]],
                "no_answer_queries": listed("no_answer"), "low_score_queries": listed("low_score"),
                "per_document": [{"doc_id": k, **v}
                                 for k, v in sorted(docs.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))],
                "by_reranker": [{"reranker": k, "searches": v["searches"],
                                 "no_answer_share": round(v["no_answer"] / v["searches"], 4) if v["searches"] else None,
                                 "mean_ms": round(v["total_ms"] / v["searches"], 1) if v["searches"] else None,
                                 "up": v["up"], "down": v["down"], "none_answers": v["none_answers"]}
                                for k, v in sorted(models.items(), key=lambda kv: (-kv[1]["searches"], kv[0]))],
                "best_bets": _best_bets(rows, fb),
                "events": {"dropped": self.stats.dropped, "write_errors": self.stats.write_errors}}


def _best_bets(rows: list[Any], fb: list[Any]) -> list[dict[str, Any]]:
    """Per best bet (`shown` entries marked `best_bet` by `record_search`): the searches that showed it and the
    thumbs up and down given to its passage there, most shown first."""
    bets: dict[str, dict[str, Any]] = {}

    def bet(entry: dict[str, Any]) -> dict[str, Any]:
        return bets.setdefault(entry["best_bet"], {"bet_id": entry["best_bet"], "label": entry.get("label", ""),
                                                   "doc_id": entry.get("doc_id"), "shown": 0, "up": 0, "down": 0})

    for r in rows:
        for entry in r.shown or ():
            if entry.get("best_bet"):
                bet(entry)["shown"] += 1
    for f in fb:
        pinned = [e for e in f.shown or () if e.get("best_bet") and e.get("chunk_id") == f.chunk_id]
        if f.chunk_id is not None and pinned:
            bet(pinned[0])["up" if f.useful else "down"] += 1
    return sorted(bets.values(), key=lambda b: (-b["shown"], b["bet_id"]))


def who_key(path: Path) -> bytes:
    """The key that hashes user ids, kept in `path` (made once, mode 0600), so hashes stay the same across
    restarts; several replicas sharing one database share it with `KB_EVENTS_KEY`."""
    path = Path(path)
    if path.is_file():
        return path.read_bytes()
    private_dir(path.parent, chmod=False)
    key = os.urandom(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    try:
        os.link(tmp, path)  # the first process to make it wins; the others read its key
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes()
