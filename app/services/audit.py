"""The audit log: who did what to the knowledge base, and who tried without the right.

Admin actions (documents uploaded or deleted, defaults or a calibration written, from the app, the API or the
CLI) and refused attempts (a non-admin at an admin route or page) are appended to a JSON-lines file beside the
index (`audit_log`, default INDEX/../audit.jsonl), one object per line: `time` (UTC, ISO 8601), `who`, `via`
(app, oidc, api-key, cli, open), `groups`, `action`, `outcome` (done | refused) and what it touched. Secrets and
document text are never written. A log that cannot be written warns and never stops the action it records.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..identity import Caller

log = logging.getLogger(__name__)


class AuditLog:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def record(self, who: Caller, action: str, outcome: str = "done", **detail: Any) -> None:
        """Append one entry (`detail`: what was touched: files, document ids, values written)."""
        entry = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "who": who.who, "via": who.via,
                 "groups": None if who.groups is None else list(who.groups), "admin": who.admin, "action": action,
                 "outcome": outcome, **detail}
        line = json.dumps(entry, ensure_ascii=False, default=str) + "\n"
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line.encode("utf-8"))  # one write of one line: entries never interleave
                finally:
                    os.close(fd)
        except OSError as exc:
            log.warning("audit log %s could not be written (%s): %s", self.path, exc, line.strip())

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every entry, oldest first (none when the file does not exist yet)."""
        if not self.path.is_file():
            return
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)
