"""`kb` commands in real child processes, started cheaply enough to kill a few of them in one test.

Importing torch and sentence-transformers costs about ten seconds of CPU per process, more than the ingest under
test. So a fork server (multiprocessing's "forkserver") imports them once, and each `kb` run is a fresh process
forked from it that sets its environment and argv and calls `app.cli.main()`, exactly what the `kb` script does:
it loads the embedder, takes the index's writer lock, reads, embeds and saves by itself, and can be SIGKILLed or
SIGSTOPped like any process. Its stdout and stderr go to a log file.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path

PRELOAD = ["app.cli", "app.services.library", "torch", "sentence_transformers", "faiss", "bm25s", "jieba"]


def _kb_main(argv: list[str], env: dict[str, str], log: str) -> None:
    """Child body: the `kb` entry point with this argv and environment, output to `log`."""
    import sys

    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.argv = ["kb", *argv]
    from app.cli import main
    from app.settings import get_settings

    get_settings.cache_clear()
    main()


@dataclass
class KbRun:
    process: multiprocessing.process.BaseProcess
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait(self, timeout: float = 300) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join()
            raise TimeoutError(f"kb did not finish in {timeout} s; its log:\n{self.output()}")
        return self.process.exitcode

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""


_context = None


def start_kb(argv: list[str], env: dict[str, str], log: Path) -> KbRun:
    """Start `kb ARGV...` as a child process (see the module docstring); returns at once."""
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    proc = _context.Process(target=_kb_main, args=(list(argv), dict(env), str(log)), daemon=True)
    proc.start()
    return KbRun(proc, log)


def holds_flock(pid: int, path: Path) -> bool:
    """Whether process `pid` holds a flock on `path` (read from /proc/locks, so the probe never takes the lock)."""
    try:
        inode = os.stat(path).st_ino
    except FileNotFoundError:
        return False
    with open("/proc/locks", encoding="ascii") as fh:
        for line in fh:
            parts = line.split()
            if "->" in parts:  # a waiter, not a holder
                continue
            if len(parts) >= 6 and parts[1] == "FLOCK" and parts[4] == str(pid) \
                    and parts[5].rsplit(":", 1)[-1] == str(inode):
                return True
    return False


def wait_for(predicate, run: KbRun, timeout: float = 300, step: float = 0.005) -> float:
    """Poll `predicate()` until true; returns the monotonic time it became true. Fails if `run` exits first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if run.process.exitcode is not None:
            raise AssertionError(f"kb exited ({run.process.exitcode}) before the awaited moment:\n{run.output()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s; kb log:\n{run.output()}")
        time.sleep(step)
    return time.monotonic()
