"""`kb watch`: the watcher runs in a thread on a temporary folder with a real index and the real MiniLM embedder;
files are created, changed, renamed and deleted as a person would, and the test waits (with a generous deadline,
polling) until the index shows each change. A locked index makes a round fail without ending the watch."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.services.library import Library
from app.services.watch import ChangeFilter, SyncRound, watch
from retrieval.index import KnowledgeIndex
from retrieval.storage import writer_lock

DEADLINE_S = 60.0  # generous: a round is a debounce plus one sync; the deadline only bounds a broken watcher


def wait_until(condition: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {DEADLINE_S:.0f} s: {what}")


class Watcher:
    """`watch` in a thread, its rounds collected, stopped through its stop event."""

    def __init__(self, folder: Path, library: Library):
        self.rounds: list[SyncRound] = []
        self.stop = threading.Event()
        self.failure: BaseException | None = None

        def run() -> None:
            try:
                watch([folder], library, self.rounds.append, self.stop, debounce_ms=200, retry_s=0.5)
            except BaseException as exc:  # surfaced by the test, not lost in the thread
                self.failure = exc

        self.thread = threading.Thread(target=run, daemon=True)

    def __enter__(self) -> Watcher:
        self.thread.start()
        wait_until(lambda: len(self.rounds) >= 1, "the first full sync")
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=DEADLINE_S)
        assert not self.thread.is_alive(), "the watcher did not stop when asked"
        assert self.failure is None, repr(self.failure)


def sources(index_dir: Path) -> set[str]:
    return {Path(rec.source).name for rec in KnowledgeIndex.read_documents(index_dir)}


def text_of(index_dir: Path, embedder, name: str) -> str:
    index = KnowledgeIndex.open(index_dir, embedder.info(), {}, create=False)
    return "\n".join(c.text for c in index.chunks.values() if Path(index.documents[c.doc_id].source).name == name)


@pytest.fixture
def library(tmp_path, embedder):
    return Library(tmp_path / "index", embedder)


def test_watch_follows_creates_changes_renames_and_deletes(tmp_path, library, embedder):
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "vpn.md").write_text("# VPN\n\nReset your VPN token in the self-service portal.\n")
    with Watcher(folder, library) as w:
        assert sources(library.index_dir) == {"vpn.md"}  # the first full sync

        (folder / "leave.txt").write_text("Annual leave: employees get 20 days a year.\n")
        wait_until(lambda: "leave.txt" in sources(library.index_dir), "a created file is indexed")

        (folder / "vpn.md").write_text("# VPN\n\nTokens are now reset by the helpdesk at extension 4410.\n")
        wait_until(lambda: "4410" in text_of(library.index_dir, embedder, "vpn.md"), "a changed file is updated")

        os.rename(folder / "leave.txt", folder / "annual-leave.txt")
        wait_until(lambda: sources(library.index_dir) == {"vpn.md", "annual-leave.txt"}, "a rename moves it")

        sub = folder / "policies"
        sub.mkdir()
        (sub / "travel.md").write_text("# Travel\n\nBook flights through the travel desk.\n")
        wait_until(lambda: "travel.md" in sources(library.index_dir), "a file in a new folder is indexed")

        (folder / "vpn.md").unlink()
        wait_until(lambda: "vpn.md" not in sources(library.index_dir), "a deleted file leaves the index")

        (folder / ".vpn.md.swp").write_bytes(b"swap")  # editor litter is not a change worth a sync
        (folder / "broken.docx").write_bytes(b"not a zip")
        wait_until(lambda: any("broken.docx" in f for r in w.rounds if r.report for f, _ in r.report.skipped),
                   "a broken file is reported as skipped")
        assert sources(library.index_dir) == {"annual-leave.txt", "travel.md"}
        assert all(".swp" not in path for r in w.rounds for _, path in r.changes)
        assert all(r.ok for r in w.rounds)


def test_a_locked_index_fails_a_round_but_not_the_watch(tmp_path, library):
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nThe first document.\n")
    with Watcher(folder, library) as w:
        with writer_lock(library.index_dir):  # as a running `kb ingest` holds it
            (folder / "b.md").write_text("# B\n\nThe second document, written while the index is locked.\n")
            wait_until(lambda: any(not r.ok for r in w.rounds), "the round reports the locked index")
            assert "being written by another process" in next(r.error for r in w.rounds if not r.ok)
            assert sources(library.index_dir) == {"a.md"}
        # no further change needed: the failed round is retried once the lock is gone
        wait_until(lambda: sources(library.index_dir) == {"a.md", "b.md"}, "the retry after the lock")
        assert w.thread.is_alive()


def test_the_index_folder_and_temporary_files_are_ignored(tmp_path):
    root = tmp_path / "kb"
    index = root / "index"
    keep = ChangeFilter([root], [index])
    from watchfiles import Change

    assert keep(Change.modified, str(root / "policy.pdf")) and keep(Change.deleted, str(root / "old-folder"))
    assert keep(Change.added, str(root / "policy.pdf.meta.json"))
    for litter in ("index/CURRENT", "index/v-1/chunks.jsonl", ".hidden/a.md", "~$policy.docx", ".~lock.a.docx#",
                   "#notes.md#", "a.md.swp", "a.md~", "download.pdf.part", "photo.gif"):
        assert not keep(Change.modified, str(root / litter)), litter


def test_cli_watch_rejects_a_missing_folder(tmp_path, isolated_settings):
    result = CliRunner().invoke(app, ["watch", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "no such file or folder" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_cli_watch_logs_each_change_and_stops_on_ctrl_c(tmp_path):
    """The real `kb watch` in its own process: one line per change, a locked index reported once and retried,
    and Ctrl+C (SIGINT) ends it with 130."""
    import signal
    import subprocess
    import sys

    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "vpn.md").write_text("# VPN\n\nReset your VPN token in the self-service portal.\n")
    log = tmp_path / "watch.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "KB_CONFIG": str(tmp_path / "kb.toml"),
           "KB_EMBEDDER": "packaged:all-MiniLM-L6-v2", "KB_RERANKER": "none", "COLUMNS": "400"}
    # A test runner started in the background by a non-interactive shell (`cmd &`, as some CI harnesses do)
    # inherits SIGINT ignored, and so would `kb watch`: Ctrl+C is given back Python's own handler, as in a
    # terminal. Done by the child itself, not by a preexec_fn: forking a test process that holds gRPC threads
    # (Milvus Lite) and running Python before exec can deadlock the child.
    start = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); from app.cli import main; main()"
    with open(log, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-c", start, "watch", str(folder),
                                 "--index", str(tmp_path / "index"), "--debounce-ms", "200"],
                                stdout=sink, stderr=subprocess.STDOUT, env=env)
    try:
        text = lambda: log.read_text(errors="replace")  # noqa: E731
        wait_until(lambda: "1 documents" in text(), "the first sync is logged")
        # notifications start just after the first sync is logged; a file written before that is indexed by the
        # catch-up round without a "file created" line, so first wait until a change is seen as one
        ready, touched = folder / "ready.md", [0.0]

        def seen_live() -> bool:
            if time.monotonic() - touched[0] > 1.0:
                ready.write_text(f"# Ready\n\n{time.monotonic()}\n")
                touched[0] = time.monotonic()
            return f"file created {ready}" in text() or f"file changed {ready}" in text()

        wait_until(seen_live, "the watcher reports a change")
        (folder / "leave.md").write_text("# Leave\n\nEmployees get 20 days of annual leave.\n")
        wait_until(lambda: f"indexed {folder / 'leave.md'}" in text(), "the new file is logged as indexed")
        assert f"file created {folder / 'leave.md'}" in text()
        with writer_lock(tmp_path / "index"):  # a `kb ingest` in another process holds the index
            (folder / "travel.md").write_text("# Travel\n\nBook flights through the travel desk.\n")
            wait_until(lambda: "sync failed: index" in text(), "the failed round is logged")
        wait_until(lambda: f"indexed {folder / 'travel.md'}" in text(), "the retry indexes the file")
        assert text().count("sync failed") == 1 and "sync succeeded again" in text()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=DEADLINE_S) == 130
        assert "stopped watching" in text() and "Traceback" not in text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_change_made_while_the_first_sync_runs_is_not_lost(tmp_path, library):
    """Notifications start after the first sync; a file written in between is caught by the catch-up round."""
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nThe first document.\n")
    rounds: list[SyncRound] = []

    def record(round_: SyncRound) -> None:
        if not rounds:  # the first sync has just finished; the watcher is not listening yet
            (folder / "late.md").write_text("# Late\n\nWritten before the watcher listened.\n")
        rounds.append(round_)

    stop = threading.Event()
    thread = threading.Thread(target=watch, args=([folder], library, record, stop),
                              kwargs={"debounce_ms": 200, "retry_s": 0.5}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: "late.md" in sources(library.index_dir), "the late file is indexed without a new change")
        assert rounds[0].why == "start" and any(r.why == "catch-up" for r in rounds)
    finally:
        stop.set()
        thread.join(timeout=DEADLINE_S)


def test_a_watch_round_skips_symbolic_links_with_their_reason(tmp_path, library):
    """Issue 32: `kb watch` syncs through the same discovery as `kb ingest`: a link is reported, never read."""
    from app.services.watch import sync_round

    secret = tmp_path / "kb.toml"
    secret.write_text('client_secret = "s3cr3t-value"\n')
    secret.chmod(0o600)
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "vpn.md").write_text("# VPN\n\nReset your VPN token in the self-service portal.\n")
    (folder / "notes.txt").symlink_to(secret)
    done = sync_round(library, [folder], set(), "start")
    assert done.ok and [(Path(f).name, "symbolic link" in why) for f, why in done.report.skipped] == \
        [("notes.txt", True)]
    assert sources(library.index_dir) == {"vpn.md"}
