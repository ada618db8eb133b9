"""Crash-safe index folders: versions written whole, then published by an atomic pointer swap; one writer.

Layout of an index folder::

    CURRENT          the name of the live version (replaced atomically with os.replace)
    v-<time>-<rand>/ a complete version: manifest.json, documents.jsonl, chunks.jsonl, dense/, lexical/
    .lock            held (flock) by the one process allowed to write

A crash or Ctrl-C at any point leaves CURRENT naming a complete version: the old one until the swap, the new
one after it. Unfinished `.tmp-*` folders are removed by the next writer.

The folder holds document text: it and its versions are 0700, every file in them 0600 (set explicitly when
written, whatever the process's umask).
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

from ingest.files import PRIVATE_DIR, atomic_write, fsync_path, make_private, private_dir

CURRENT = "CURRENT"
LOCK = ".lock"


class IndexLocked(RuntimeError):
    """Another process is writing this index."""

    kind = "conflict"  # app.errors maps it to an HTTP status and an exit code


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
    """Exclusive, non-blocking: a second concurrent writer gets IndexLocked at once, not an interleaved index.
    The index folder is made (or set) 0700."""
    private_dir(root)
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
    private_dir(root, chmod=False)
    tmp.mkdir(mode=PRIVATE_DIR)
    os.chmod(tmp, PRIVATE_DIR)  # mkdir's mode is narrowed by the umask, never widened: set it exactly
    return tmp


def publish(root: Path, tmp: Path) -> Path:
    """Make the written version private (files 0600, folders 0700: the stores and BM25 write theirs with the
    umask's mode), fsync it, rename it into place and swap CURRENT to it; then drop older versions.

    The version that was live just before is kept one more round, so a reader still loading it is not cut off.
    """
    previous = current_version(root)
    make_private(tmp)
    fsync_tree(tmp)
    final = root / tmp.name.removeprefix(".tmp-")
    os.rename(tmp, final)
    fsync_path(root)
    atomic_write(root / CURRENT, final.name, private=True)  # fsynced, and its folder entry too
    for old in root.glob("v-*"):
        if old not in (final, previous):
            shutil.rmtree(old, ignore_errors=True)
    return final
