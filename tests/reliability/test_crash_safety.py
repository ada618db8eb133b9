"""Crash safety of the ingest process: `kb ingest` killed with SIGKILL at seeded points leaves the old or the new
index, never a half one, and the next `kb ingest` completes it; a second concurrent ingest is refused.

The kill points are spread over a reference run's phases, observed from outside without hooks in the code: the
writer lock being held (ingest started: files read, chunked, embedded), a `.tmp-v-*` folder appearing (the new
version being written) and CURRENT changing (published).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from pathlib import Path

from retrieval.storage import CURRENT, LOCK

from .conftest import index_state, last_json_line, write_corpus
from .kb_process import KbRun, holds_flock, start_kb, wait_for

SEED = 20261122


def _ingest(corpus: Path, root: Path, env: dict, log: Path) -> KbRun:
    return start_kb(["ingest", str(corpus), "--index", str(root), "--json"], env, log)


def _current(root: Path) -> str:
    try:
        return (root / CURRENT).read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def _writing(root: Path) -> bool:
    return any(root.glob(".tmp-v-*"))


def _phases(run: KbRun, root: Path) -> dict[str, float]:
    """Watch a run to its end; seconds from the lock being taken to the save starting, publishing and exiting."""
    before = _current(root)
    seen: dict[str, float] = {}
    while run.process.exitcode is None:
        now = time.monotonic()
        if "lock" not in seen and holds_flock(run.pid, root / LOCK):
            seen["lock"] = now
        if "save" not in seen and _writing(root):
            seen["save"] = now
        if "published" not in seen and _current(root) != before:
            seen["published"] = now
        time.sleep(0.002)
    seen["exit"] = time.monotonic()
    assert run.wait() == 0, run.output()
    assert {"lock", "save", "published"} <= set(seen), (seen, run.output())
    return {k: v - seen["lock"] for k, v in seen.items()}


def _content(state: dict) -> tuple:
    return state["documents"], state["chunks"]


def test_kill_9_during_kb_ingest_leaves_old_or_new_index_and_a_rerun_completes(tmp_path, kb_env):
    """Five SIGKILLs at seeded points; each run starts on what the previous kill left (debris included), so every
    leftover is also proven resumable; a last, unkilled run must reach exactly the reference's state."""
    corpus, old_root = tmp_path / "kb", tmp_path / "old"
    write_corpus(corpus, range(12), seed=1, tag="v1")
    assert _ingest(corpus, old_root, kb_env, tmp_path / "old.log").wait() == 0
    old = index_state(old_root)

    # The sync that gets killed: 3 documents changed, 2 gone, 24 new.
    write_corpus(corpus, range(3), seed=1, tag="v2")
    for i in (3, 4):
        (corpus / f"doc{i:03d}.md").unlink()
    write_corpus(corpus, range(12, 36), seed=1, tag="v2")

    ref_root = tmp_path / "reference"
    shutil.copytree(old_root, ref_root)
    phases = _phases(_ingest(corpus, ref_root, kb_env, tmp_path / "reference.log"), ref_root)
    new = index_state(ref_root)
    assert len(new["documents"]) == 34 and _content(new) != _content(old)

    rng = random.Random(SEED)
    # Three points spread over reading and embedding, two inside the save (the last may land just after it).
    plan = [("lock", (i + rng.random()) / 3 * phases["save"]) for i in range(3)]
    plan += [("save", rng.random() * (phases["published"] - phases["save"]) * 1.2) for _ in range(2)]
    root = tmp_path / "index"
    outcomes = []
    for n, (after, delay) in enumerate(plan):
        if not root.exists():
            shutil.copytree(old_root, root)
        run = _ingest(corpus, root, kb_env, tmp_path / f"killed{n}.log")
        if after == "lock":
            wait_for(lambda pid=run.pid: holds_flock(pid, root / LOCK), run)
        else:
            wait_for(lambda: _writing(root), run, step=0.001)
        time.sleep(delay)
        run.process.kill()  # SIGKILL: no handler, no cleanup, no flush
        assert run.wait() in (-signal.SIGKILL, 0), run.output()

        state = index_state(root)  # opens, and is one whole version
        assert _content(state) in (_content(old), _content(new)), f"half an index after a kill at {after}+{delay}"
        outcomes.append("old" if _content(state) == _content(old) else "new")
        if outcomes[-1] == "new":  # already complete: the next kill needs the old state to interrupt again
            shutil.rmtree(root)
            shutil.copytree(old_root, root)

    rerun = _ingest(corpus, root, kb_env, tmp_path / "rerun.log")  # on whatever the last kill left
    assert rerun.wait() == 0, rerun.output()
    report = last_json_line(rerun.output())
    assert report["total_documents"] == 34 and report["skipped"] == []
    assert _content(index_state(root)) == _content(new)
    debris = sorted(p.name for p in root.glob(".tmp-*"))
    assert debris == [], f"debris of the killed runs was not cleaned up: {debris} after kills {outcomes}"
    assert len(list(root.glob("v-*"))) <= 2  # the live version and the one before it
    assert len(outcomes) == len(plan)
    print(f"kill points {[(a, round(d, 3)) for a, d in plan]}: index found {outcomes}")  # shown with -s


def test_a_second_ingest_is_refused_while_the_first_holds_the_lock(tmp_path, kb_env):
    first_corpus, second_corpus, root = tmp_path / "first", tmp_path / "second", tmp_path / "index"
    write_corpus(first_corpus, range(30), seed=2, tag="first")
    write_corpus(second_corpus, range(5), seed=3, tag="second")
    first = _ingest(first_corpus, root, kb_env, tmp_path / "first.log")
    wait_for(lambda: holds_flock(first.pid, root / LOCK), first)
    os.kill(first.pid, signal.SIGSTOP)  # frozen while it holds the lock: the second cannot slip in after it
    try:
        second = _ingest(second_corpus, root, kb_env, tmp_path / "second.log")
        code = second.wait()
    finally:
        os.kill(first.pid, signal.SIGCONT)
    said = " ".join(second.output().split())  # rich wraps long lines
    assert code == 2, said
    assert "is being written by another process" in said and "try again" in said and "Traceback" not in said
    assert first.wait() == 0, first.output()
    state = index_state(root)  # the first ingest alone, not interleaved with the second
    assert len(state["documents"]) == 30
    assert {Path(src).parent for src in _sources(root)} == {first_corpus.resolve()}


def _sources(root: Path) -> list[str]:
    from retrieval.index import KnowledgeIndex

    manifest = KnowledgeIndex.read_manifest(root)
    index = KnowledgeIndex.open(root, manifest["embedder"], {}, create=False)
    return [r.source for r in index.documents.values()]


def test_a_killed_writers_leftovers_are_removed_by_the_next_writer(tmp_path, kb_env):
    """What a writer killed inside `publish` leaves: a half-written version folder and the new CURRENT pointer
    written but not yet swapped in. The live version is untouched, and the next writer removes both."""
    from retrieval.storage import writer_lock

    corpus, root = tmp_path / "kb", tmp_path / "index"
    write_corpus(corpus, range(3), seed=4)
    assert _ingest(corpus, root, kb_env, tmp_path / "first.log").wait() == 0
    before = index_state(root)
    (root / ".tmp-v-20261122000000-dead00").mkdir()
    (root / ".tmp-v-20261122000000-dead00" / "documents.jsonl").write_text('{"half": ', encoding="utf-8")
    (root / f".tmp-{CURRENT}-beef00").write_text("v-20261122000000-dead00", encoding="utf-8")
    assert index_state(root) == before  # readers see the live version only
    with writer_lock(root):
        pass
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".tmp-")) == []
    assert index_state(root) == before
