"""The one error type of the ingest stage."""

from __future__ import annotations

from pathlib import Path


class IngestError(Exception):
    """A file that cannot be ingested. `str()` names the file and the reason, for a one-line skip report."""

    kind = "validation"  # app.errors maps it to an HTTP status and an exit code

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
