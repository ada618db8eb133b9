"""`kb watch PATH...`: keep an index in line with folders while people edit, add, rename and delete files.

A full `Library.sync` of the watched paths runs at the start and after every burst of changes (watchfiles
debounces a burst into one round): the same sync as `kb ingest`, with its lock, crash safety and report, and as
cheap as it is for unchanged files (one read and one hash each). A round that fails with an error a person can
fix (the index is locked by a running `kb ingest`, a folder cannot be read, the index was built with another
embedder) is reported and tried again on the next change, or after `retry_s` without one; it never ends the
watch. Anything else is a bug and propagates.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import watchfiles

from ingest.load import SIDECAR_SUFFIX, SUPPORTED_SUFFIXES

from ..errors import outcome_of
from .library import IngestReport, Library

# Temporary files of editors and office suites, beside what watchfiles' DefaultFilter already ignores (*.swp,
# *~, .#name): Emacs autosaves, LibreOffice and MS Office lock files, partial downloads and uploads.
_TEMPORARY = ("#", "~$", ".~lock")
_TEMPORARY_SUFFIXES = (".tmp", ".part", ".crdownload", ".download")


Why = Literal["start", "change", "retry", "catch-up"]


@dataclass(frozen=True)
class SyncRound:
    """One sync of the watched paths: why it ran (the first sync, a burst of changes, a retry of a failed round,
    the check for changes made during the first sync), the file changes that started it, then its report, or
    the error that stopped it (the index is then left as it was)."""

    why: Why
    changes: tuple[tuple[str, str], ...] = ()  # (added | modified | deleted, path), sorted
    report: IngestReport | None = None
    error: str | None = None
    changed_paths: frozenset[str] = field(default_factory=frozenset)

    @property
    def ok(self) -> bool:
        return self.error is None


class ChangeFilter(watchfiles.DefaultFilter):
    """Changes worth a sync: supported files, their sidecars, and folders (a renamed or deleted folder reports
    only itself). Hidden paths under a watched root, editor and office temporary files, and everything inside
    the index folder are ignored."""

    def __init__(self, roots: Sequence[Path], ignore: Sequence[Path]):
        super().__init__(ignore_paths=[str(p) for p in ignore])
        self.roots = [Path(r) for r in roots]

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
        if not super().__call__(change, path):
            return False
        p = Path(path)
        name = p.name
        if name.startswith(_TEMPORARY) or name.lower().endswith(_TEMPORARY_SUFFIXES):
            return False
        for root in self.roots:
            if p != root and p.is_relative_to(root) and any(part.startswith(".") for part in p.relative_to(root).parts):
                return False
        suffix = p.suffix.lower()
        return suffix in SUPPORTED_SUFFIXES or name.endswith(SIDECAR_SUFFIX) or suffix == "" or p.is_dir()


def sync_round(library: Library, paths: Sequence[Path], changes: set[tuple[watchfiles.Change, str]],
               why: Why) -> SyncRound:
    """Sync `paths` into `library`'s index once; a user-fixable failure comes back as `error`, not raised."""
    named = tuple(sorted((change.name, path) for change, path in changes))
    paths_changed = frozenset(p for _, p in named)
    try:
        report = library.sync(list(paths))
    except OSError as exc:
        return SyncRound(why, named, error=str(exc), changed_paths=paths_changed)
    except Exception as exc:
        if outcome_of(exc) is None:
            raise
        return SyncRound(why, named, error=str(exc), changed_paths=paths_changed)
    return SyncRound(why, named, report=report, changed_paths=paths_changed)


def watch(paths: Sequence[str | Path], library: Library, on_round: Callable[[SyncRound], None],
          stop: threading.Event | None = None, debounce_ms: int = 1000, retry_s: float = 10.0,
          force_polling: bool | None = None) -> None:
    """Sync `paths` into `library`'s index now and after every burst of changes until `stop` is set (or Ctrl+C,
    which raises KeyboardInterrupt in the main thread). Each round goes to `on_round` as it finishes. A failed
    round is retried on the next change or after `retry_s` seconds. ValueError naming the path when one does
    not exist. `force_polling`: poll instead of using OS notifications (network drives; None: watchfiles
    decides, and the environment variable WATCHFILES_FORCE_POLLING decides too)."""
    roots = [Path(p).resolve() for p in paths]
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise ValueError(f"cannot watch {', '.join(missing)}: no such file or folder; create it or fix the path")
    if debounce_ms < 0 or retry_s <= 0:
        raise ValueError(f"debounce_ms must be >= 0 and retry_s > 0, got {debounce_ms} and {retry_s}")
    stop = stop if stop is not None else threading.Event()
    index_dir = Path(os.path.abspath(library.index_dir))
    ignore = [index_dir, index_dir.resolve()]
    last = sync_round(library, roots, set(), "start")
    on_round(last)
    changes_seen = watchfiles.watch(*roots, watch_filter=ChangeFilter(roots, ignore), debounce=debounce_ms,
                                    stop_event=stop, rust_timeout=int(retry_s * 1000), yield_on_timeout=True,
                                    force_polling=force_polling)
    # Notifications start only once the first sync is done: a file changed while it ran is caught by one more
    # sync at the first quiet moment (`retry_s`), which costs a hash per file when nothing changed.
    caught_up = False
    for changes in changes_seen:
        if changes:
            last = sync_round(library, roots, changes, "change")
        elif not last.ok:
            last = sync_round(library, roots, changes, "retry")
        elif not caught_up:
            last = sync_round(library, roots, changes, "catch-up")
        else:
            continue
        caught_up = caught_up or last.ok
        on_round(last)
