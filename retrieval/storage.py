"""Crash-safe index folders: versions written whole, then published by an atomic pointer swap; one writer.

Layout of an index folder::

    CURRENT          the name of the live version (replaced atomically with os.replace)
    v-<time>-<rand>/ a complete version: manifest.json, documents.jsonl, chunks.jsonl, dense/, lexical/
    .lock            held (flock) by the one process allowed to write

A crash or Ctrl-C at any point leaves CURRENT naming a complete version: the old one until the swap, the new
one after it. Unfinished `.tmp-*` folders are removed by the next writer.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CURRENT = "CURRENT"
LOCK = ".lock"


class IndexLocked(RuntimeError):
    """Another process is writing this index."""

    kind = "conflict"  # app.errors maps it to an HTTP status and an exit code


def fsync_path(path: Path) -> None:
    """Flush a file or a folder entry to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):
        fsync_path(path)
    fsync_path(folder)


def current_version(root: Path) -> Path | None:
    """The live version folder, or None for an empty/new index folder."""
    pointer = root / CURRENT
    if not pointer.is_file():
        return None
    name = pointer.read_text(encoding="utf-8").strip()
    folder = root / name
    return folder if name and folder.is_dir() else None


@contextmanager
def writer_lock(root: Path) -> Iterator[None]:
    """Exclusive, non-blocking: a second concurrent writer gets IndexLocked at once, not an interleaved index."""
    root.mkdir(parents=True, exist_ok=True)
    fh = open(root / LOCK, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        fh.close()
        raise IndexLocked(f"index {root} is being written by another process (an ingest is running); "
                          "wait for it to finish and try again") from exc
    try:
        for stale in root.glob(".tmp-*"):  # a version folder, or the CURRENT pointer file, of a killed writer
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def new_version_dir(root: Path) -> Path:
    """A fresh temporary folder to write a version into (inside the index, so the final rename is atomic)."""
    tmp = root / f".tmp-v-{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(3)}"
    tmp.mkdir(parents=True)
    return tmp


def publish(root: Path, tmp: Path) -> Path:
    """fsync the written version, rename it into place and swap CURRENT to it; then drop older versions.

    The version that was live just before is kept one more round, so a reader still loading it is not cut off.
    """
    previous = current_version(root)
    fsync_tree(tmp)
    final = root / tmp.name.removeprefix(".tmp-")
    os.rename(tmp, final)
    fsync_path(root)
    pointer_tmp = root / f".tmp-{CURRENT}-{secrets.token_hex(3)}"
    pointer_tmp.write_text(final.name, encoding="utf-8")
    fsync_path(pointer_tmp)
    os.replace(pointer_tmp, root / CURRENT)
    fsync_path(root)
    for old in root.glob("v-*"):
        if old not in (final, previous):
            shutil.rmtree(old, ignore_errors=True)
    return final
