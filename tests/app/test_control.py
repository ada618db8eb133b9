"""Shared control state (`app.services.control`) on a real database: SQLite here, PostgreSQL too when
`KB_TEST_POSTGRES_URL` names one (as `.ci/run` does). Writers in several real processes: a compare-and-set write is
refused when someone wrote first, so read-modify-write loops serialise and no write is ever lost; the lock is held by
one process at a time and freed when its holder dies; the rollout and the vocabulary work the same on both."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading

import pytest

from app.errors import KbError
from app.services.control import ControlStore, control_store
from app.services.rollout import Release, RolloutState, RolloutStore
from app.services.vocabulary import VocabularyStore
from tests.databases import postgres_url

WRITERS, ROUNDS = 4, 25


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'kb.db'}"
    return postgres_url(drop=["kb_control"])  # a clean table for each test


def _count_up(url: str, rounds: int, conflicts) -> None:
    """Child body: add 1 to the entry "counter" `rounds` times, each a read then a compare-and-set write, reading
    again whenever another writer got there first."""
    store = ControlStore(url)
    for _ in range(rounds):
        while True:
            entry = store.read("counter")
            try:
                store.write("counter", str(int(entry.body) + 1), f"pid {os.getpid()}", entry.version)
                break
            except KbError as exc:
                assert exc.kind == "conflict", exc.message
                with conflicts.get_lock():
                    conflicts.value += 1


@pytest.mark.slow
def test_concurrent_writers_in_several_processes_never_lose_a_write(url):
    store = ControlStore(url)
    store.write("counter", "0", "test", expect=None)
    ctx = multiprocessing.get_context("spawn")  # fresh processes: no connection shared with this one
    conflicts = ctx.Value("i", 0)
    procs = [ctx.Process(target=_count_up, args=(url, ROUNDS, conflicts)) for _ in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    entry = store.read("counter")
    assert int(entry.body) == WRITERS * ROUNDS and entry.version == WRITERS * ROUNDS + 1  # every write counted
    print(f"{conflicts.value} writes were refused and redone")


def test_processes_opening_a_new_database_at_once_all_get_it(url):
    """Each store creates the table when it is missing; those that lose the race to create it go on."""
    opened = threading.Barrier(8)
    failures: list[BaseException] = []

    def open_and_write(i: int) -> None:
        store = ControlStore(url)
        opened.wait()
        try:
            store.write(f"entry-{i}", str(i), "test", expect=None)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failures.append(exc)

    threads = [threading.Thread(target=open_and_write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    assert [ControlStore(url).read(f"entry-{i}").body for i in range(8)] == [str(i) for i in range(8)]


def test_a_stale_write_is_refused_and_names_who_wrote_first(url):
    store = ControlStore(url)
    assert store.read("synonyms") is None and store.version("synonyms") is None
    first = store.write("synonyms", "a, b\n", "alice", expect=None)
    assert (first.version, first.updated_by) == (1, "alice") and store.read("synonyms") == first
    with pytest.raises(KbError) as twice:
        store.write("synonyms", "c, d\n", "bob", expect=None)  # both thought they created it
    assert twice.value.kind == "conflict" and "version 1, written by alice" in twice.value.message
    store.write("synonyms", "c, d\n", "bob", expect=1)
    with pytest.raises(KbError, match="changed by someone else"):
        store.write("synonyms", "e, f\n", "alice", expect=1)
    assert store.read("synonyms").body == "c, d\n" and store.version("synonyms") == 2
    with pytest.raises(KbError, match="key must be a name of 1 to 128 characters"):
        store.write("", "x", "alice", expect=None)


def _hold(url: str, holding, name: str) -> None:
    """Child body: hold the lock `name` until killed."""
    store = ControlStore(url)
    with store.lock(name, "busy"):
        holding.set()
        signal.pause()


def test_the_lock_is_one_process_at_a_time_and_dies_with_its_holder(url):
    ctx = multiprocessing.get_context("spawn")
    holding = ctx.Event()
    holder = ctx.Process(target=_hold, args=(url, holding, "rollout"))
    holder.start()
    try:
        assert holding.wait(60)
        store = ControlStore(url)
        with pytest.raises(KbError) as busy:
            with store.lock("rollout", "another change is under way"):
                pass
        assert busy.value.kind == "conflict" and busy.value.message == "another change is under way"
        with store.lock("vocabulary", "busy"):  # another name: not held
            pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # no clean-up code runs: the database or the kernel frees it
        holder.join(30)
    with ControlStore(url).lock("rollout", "busy"):
        pass


def test_the_rollout_and_the_vocabulary_live_in_the_database(url, tmp_path):
    rollout = RolloutStore(control_store(url), tmp_path / "missing.json")
    assert rollout.read() == RolloutState() and rollout.stamp() is None
    with rollout.locked():
        state = rollout.read().promoted(Release("models/v2", 1.0, "root"), "models/v1")
        rollout.write(state)
        rollout.write(state.rolled_back(2.0, "root", "models/v1"))  # within one lock, one change after another
    assert rollout.stamp() == 2 and [h["action"] for h in rollout.read().history] == ["promote", "rollback"]
    other = RolloutStore(ControlStore(url))  # another process's view: the same state
    assert other.read() == rollout.read()
    with rollout.locked():
        other.write(RolloutState())  # someone wrote without the lock meanwhile: this change is refused, not lost
        with pytest.raises(KbError, match="changed by someone else"):
            rollout.write(state)
    assert rollout.read() == RolloutState()

    words = VocabularyStore(control_store(url))
    assert words.stamp() == (None, None) and words.load().counts == {"user_dict": 0, "synonyms": 0}
    words.save("synonyms", "年假, 年休假\n", "root")
    words.save("user_dict", "飞书审批\n", "root")
    vocab = VocabularyStore(ControlStore(url)).load()
    assert vocab.stamp == (1, 1) == words.stamp() and vocab.counts == {"user_dict": 1, "synonyms": 1}
