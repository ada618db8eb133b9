"""The events store on a real database (SQLite here; PostgreSQL too when `KB_TEST_POSTGRES_URL` names one, as
`.ci/run` does): searches recorded off the request path, feedback checked against what the search showed,
nothing lost under concurrency or across a restart, drops and database errors counted, retention, migrations."""

from __future__ import annotations

import logging
import os
import threading

import pytest
from sqlalchemy import create_engine, text

from app.components import make_search
from app.errors import KbError
from app.identity import OPERATOR, Caller
from app.services.events import EventLog, normalize_query
from app.services.request import SearchRequest
from tests.databases import postgres_url

DOCS = {
    "vpn.md": "# VPN token\n\nTo reset a forgotten VPN token, open the self-service portal and choose Reset.\n",
    "leave.md": "# Annual leave\n\nEmployees get twenty days of annual leave a year.\n",
    "salary.md": "---\nacl: [hr]\n---\n# Salary bands\n\nBand B3 pays between 60k and 80k a year.\n",
}
KEY = b"k" * 32
ALICE = Caller.member_of([], who="alice@example.com", via="oidc")
HANA = Caller.member_of(["hr"], who="hana@example.com", via="oidc")
BOSS = Caller("boss@example.com", None, admin=True, via="oidc")
CORPUS_SETTINGS = {"cache_size": 0}  # with DOCS: this module's corpus (the corpus fixture)


def urls(tmp_path) -> list[str]:
    out = [f"sqlite:///{tmp_path / 'events.db'}"]
    if os.environ.get("KB_TEST_POSTGRES_URL"):
        out.append(os.environ["KB_TEST_POSTGRES_URL"])
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "postgresql":
        url = postgres_url(drop=["kb_feedback", "kb_searches", "kb_schema"])  # a clean database for each test
    else:
        url = f"sqlite:///{tmp_path / 'events.db'}"
    log = EventLog(url, KEY).open()
    yield log
    log.close()


@pytest.fixture
def service(corpus, embedder, store):
    settings, index = corpus.settings, corpus.service.index
    return make_search(settings, embedder, index, events=store)


def test_searches_are_recorded_and_feedback_is_checked(service, store):
    mine = service.search(SearchRequest.of("how do I reset my VPN token", threshold=0.0), ALICE)
    assert mine.query_id and len(mine.query_id) == 32
    chunk = mine.results[0].hit.chunk
    assert store.record_feedback(ALICE, mine.query_id, chunk.chunk_id, True) > 0
    assert store.record_feedback(ALICE, mine.query_id, None, False, comment="not what I asked") > 0
    with pytest.raises(KbError) as unknown:
        store.record_feedback(ALICE, "f" * 32, chunk.chunk_id, True)
    assert unknown.value.kind == "not_found"
    with pytest.raises(KbError) as not_shown:
        store.record_feedback(ALICE, mine.query_id, "some-other-chunk", True)
    assert not_shown.value.kind == "validation" and "not among the results" in not_shown.value.message
    with pytest.raises(KbError) as someone_else:
        store.record_feedback(HANA, mine.query_id, chunk.chunk_id, False)
    assert someone_else.value.kind == "forbidden"
    store.record_feedback(BOSS, mine.query_id, chunk.chunk_id, False)  # an admin may judge anyone's search
    store.flush()
    report = store.analytics(30)
    assert report["searches"] == 1 and report["feedback"] == {"up": 1, "down": 1, "none_answers": 1}
    assert report["top_queries"] == [{"query": "how do I reset my VPN token", "count": 1}]
    assert report["per_document"] == [{"doc_id": chunk.doc_id, "up": 1, "down": 1}]
    judged = list(store.judgments())
    assert [(j["chunk_id"], j["useful"]) for j in judged] == [(chunk.chunk_id, True), (None, False),
                                                              (chunk.chunk_id, False)]
    assert all(j["query"] == "how do I reset my VPN token" and j["groups"] == [] for j in judged)


@pytest.mark.slow
def test_no_answer_queries_are_grouped_by_their_normalised_text(service, store):
    for q in ("Where is the gym?", "where is the GYM", "where is the gym？"):
        res = service.search(SearchRequest.of(q, threshold=1.0), ALICE)  # nothing reaches 1.0: no answer
        assert not res.results
    service.search(SearchRequest.of("annual leave days", threshold=0.0), ALICE)
    store.flush()
    report = store.analytics(30)
    assert report["searches"] == 4 and report["no_answer_share"] == 0.75
    assert [(g["query"], g["count"]) for g in report["no_answer_queries"]] == [("where is the gym？", 3)]
    assert report["latency_ms"]["p50"] > 0 and report["per_day"][0]["no_answer"] == 3
    assert normalize_query("试用期员工离职需要办理哪些手续？") == "试用期员工离职需要办理哪些手续"


@pytest.mark.slow
def test_twenty_threads_searching_and_judging_lose_nothing_and_a_restart_keeps_it(service, store):
    errors: list[BaseException] = []

    def person(i: int) -> None:
        who = Caller.member_of([], who=f"user{i}@example.com", via="oidc")
        try:
            for q in ("vpn token reset", "annual leave days", "salary band"):
                res = service.search(SearchRequest.of(q, threshold=0.0), who)
                if res.results:
                    store.record_feedback(who, res.query_id, res.results[0].hit.chunk.chunk_id, i % 2 == 0)
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)

    threads = [threading.Thread(target=person, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    store.close()
    again = EventLog(store.url, KEY).open()  # a restart
    try:
        report = again.analytics(30)
        assert report["searches"] == 60 and store.stats.dropped == 0 and store.stats.write_errors == 0
        assert report["feedback"]["up"] + report["feedback"]["down"] == 60 == len(list(again.judgments()))
    finally:
        again.close()


@pytest.mark.slow
def test_a_full_queue_drops_and_counts_never_blocks(corpus, embedder, tmp_path):
    settings, index = corpus.settings, corpus.service.index
    log = EventLog(f"sqlite:///{tmp_path / 'e.db'}", KEY, queue_size=2)  # not opened: nothing drains the queue
    svc = make_search(settings, embedder, index, events=log)
    for _ in range(5):
        assert svc.search(SearchRequest.of("vpn token", threshold=0.0), OPERATOR).results  # searches are served regardless
    assert (log.stats.queued, log.stats.dropped) == (2, 3)
    log.open()
    log.flush()
    assert log.analytics(30)["searches"] == 2 and log.analytics(30)["events"]["dropped"] == 3
    log.close()


def test_a_database_that_cannot_be_written_warns_and_counts(corpus, embedder, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="app.services.events")
    settings, index = corpus.settings, corpus.service.index
    url = f"sqlite:///{tmp_path / 'e.db'}"
    log = EventLog(url, KEY).open()
    svc = make_search(settings, embedder, index, events=log)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE kb_feedback"))
        conn.execute(text("DROP TABLE kb_searches"))  # the database breaks behind the service's back
    engine.dispose()
    res = svc.search(SearchRequest.of("vpn token", threshold=0.0), OPERATOR)
    assert res.results  # the person still gets an answer
    log.flush()
    assert log.stats.write_errors == 1 and "not recorded" in caplog.text
    log.close()


@pytest.mark.slow
def test_retention_purges_old_searches_with_their_feedback(corpus, embedder, tmp_path):
    settings, index = corpus.settings, corpus.service.index
    now = [1_700_000_000.0]
    log = EventLog(f"sqlite:///{tmp_path / 'e.db'}", KEY, retention_days=90, clock=lambda: now[0]).open()
    svc = make_search(settings, embedder, index, events=log)
    old = svc.search(SearchRequest.of("vpn token", threshold=0.0), ALICE)
    log.record_feedback(ALICE, old.query_id, old.results[0].hit.chunk.chunk_id, True)
    now[0] += 91 * 86_400
    svc.search(SearchRequest.of("annual leave", threshold=0.0), ALICE)
    log.flush()
    log.purge()  # (the writer also purges once a day of its clock has passed: either way the old search is gone)
    assert log.analytics(3650)["searches"] == 1 and list(log.judgments()) == []
    log.close()


def test_users_are_a_keyed_hash_unless_stored_on_purpose(tmp_path):
    hashed = EventLog("sqlite://", KEY)
    assert hashed.who(ALICE) != ALICE.who and hashed.who(ALICE) == EventLog("sqlite://", KEY).who(ALICE)
    assert hashed.who(ALICE) != EventLog("sqlite://", b"x" * 32).who(ALICE)
    assert EventLog("sqlite://", KEY, store_user=True).who(ALICE) == "alice@example.com"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_opening_a_new_database_at_once_all_open_it(backend, tmp_path):
    """Replicas started together on an empty database each create the schema when missing: the losers go on."""
    url = (postgres_url(drop=["kb_feedback", "kb_searches", "kb_schema"]) if backend == "postgresql"
           else f"sqlite:///{tmp_path / 'events.db'}")
    together = threading.Barrier(6)
    opened, failures = [], []

    def open_log() -> None:
        together.wait()
        try:
            opened.append(EventLog(url, KEY).open())
        except KbError as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_log) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for log in opened:
        log.close()
    assert failures == [] and len(opened) == 6


def test_schema_versions(tmp_path):
    url = f"sqlite:///{tmp_path / 'e.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:  # a database from before the first migration: the version table only
        conn.execute(text("CREATE TABLE kb_schema (version INTEGER NOT NULL)"))
    EventLog(url, KEY).open().close()
    with engine.begin() as conn:
        assert conn.execute(text("SELECT version FROM kb_schema")).scalar() == 1
        conn.execute(text("UPDATE kb_schema SET version = 99"))
    engine.dispose()
    with pytest.raises(KbError, match="schema version 99.*KB_DATABASE_URL") as newer:
        EventLog(url, KEY).open()
    assert newer.value.kind == "conflict"


@pytest.mark.slow
def test_one_bad_row_does_not_cost_the_others_their_record(corpus, embedder, tmp_path):
    settings, index = corpus.settings, corpus.service.index
    log = EventLog(f"sqlite:///{tmp_path / 'e.db'}", KEY)  # queued first, written together when it opens
    svc = make_search(settings, embedder, index, events=log)
    first = svc.search(SearchRequest.of("vpn token", threshold=0.0), ALICE)
    log.record_search(first, ALICE)  # the same query_id again: that row cannot be written
    svc.search(SearchRequest.of("annual leave", threshold=0.0), ALICE)
    log.open()
    log.flush()
    assert (log.stats.written, log.stats.write_errors) == (2, 1) and log.analytics(30)["searches"] == 2
    log.close()
