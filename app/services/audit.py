"""The audit log: who did what to the knowledge base, and who tried without the right.

Admin actions (documents uploaded or deleted, defaults or a calibration written, from the app, the API or the
CLI) and refused attempts (a non-admin at an admin route or page) are appended to a JSON-lines file beside the
index (`audit_log`, default INDEX/../audit.jsonl), one object per line: `time` (UTC, ISO 8601), `who`, `via`
(app, oidc, api-key, cli, open), `groups`, `action`, `outcome` (done | refused) and what it touched. Secrets and
document text are never written. A log that cannot be written warns and never stops the action it records.

The log is private (0600, in a folder made 0700) and bounded: past `max_bytes` it is renamed `audit.jsonl.1`
(older ones shift to `.2` … `.<keep>`, and the oldest goes), so refused attempts repeated without end cannot fill
the disk. What rotation drops is still counted: `counts()` (entries by outcome since the log began, in
`audit.jsonl.counts`) survives rotation and is served on /metrics (`kb_audit_entries`). Several processes share
one log: each append, count and rotation holds `audit.jsonl.lock`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ingest.files import PRIVATE_FILE, atomic_write, private_dir

from ..identity import Caller

log = logging.getLogger(__name__)


class AuditLog:
    def __init__(self, path: Path, max_bytes: int = 10 * 2**20, keep: int = 5):
        """The log at `path`, rotated once it is over `max_bytes`, keeping `keep` older files."""
        if max_bytes < 1 or keep < 0:
            raise ValueError(f"audit log: max_bytes must be >= 1 and keep >= 0, got {max_bytes} and {keep}; fix "
                             "audit_max_mb / audit_keep")
        self.path = Path(path)
        self.max_bytes, self.keep = max_bytes, keep
        self.counts_path = self.path.with_name(self.path.name + ".counts")
        self._lock = threading.Lock()

    def record(self, who: Caller, action: str, outcome: str = "done", **detail: Any) -> None:
        """Append one entry (`detail`: what was touched: files, document ids, values written), count it, and
        rotate the log when it has grown past `max_bytes`."""
        entry = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "who": who.who, "via": who.via,
                 "groups": None if who.groups is None else list(who.groups), "admin": who.admin, "action": action,
                 "outcome": outcome, **detail}
        line = json.dumps(entry, ensure_ascii=False, default=str) + "\n"
        try:
            with self._locked():
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
                try:
                    os.write(fd, line.encode("utf-8"))  # one write of one line: entries never interleave
                    size = os.fstat(fd).st_size
                finally:
                    os.close(fd)
                counts = self.counts()
                counts[outcome] = counts.get(outcome, 0) + 1
                atomic_write(self.counts_path, json.dumps(counts, sort_keys=True), private=True, fsync=False)
                if size > self.max_bytes:
                    self._rotate()
        except OSError as exc:
            log.warning("audit log %s could not be written (%s): %s", self.path, exc, line.strip())

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """This process's threads and other processes, one at a time (appends, counts and rotation)."""
        with self._lock:
            private_dir(self.path.parent, chmod=False)
            fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # held for one append: a short wait, never a refusal
                yield
            finally:
                os.close(fd)  # releases the lock

    def _rotate(self) -> None:
        """audit.jsonl → .1, .1 → .2, …; the file past `keep` goes (all of them with keep=0)."""
        for n in range(self.keep, 0, -1):
            older = self._rotated(n - 1)
            if older.exists():
                os.replace(older, self._rotated(n))
        if self.keep == 0:
            self.path.unlink(missing_ok=True)
        self._rotated(self.keep + 1).unlink(missing_ok=True)

    def _rotated(self, n: int) -> Path:
        return self.path if n == 0 else self.path.with_name(f"{self.path.name}.{n}")

    def counts(self) -> dict[str, int]:
        """Entries recorded by outcome (`done`, `refused`) since the log began, rotated-away ones included."""
        try:
            data = json.loads(self.counts_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("audit counts %s unreadable (%s); counting again from 0: delete it to silence this",
                        self.counts_path, exc)
            return {}
        return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every entry still kept, oldest first: the rotated files, then the current one (none when there is no
        file yet)."""
        for n in range(self.keep, -1, -1):
            path = self._rotated(n)
            if not path.is_file():
                continue
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        yield json.loads(line)
