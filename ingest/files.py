"""Writing and reading files safely: the one place for atomic writes that keep a file's mode, private folders and
files, and reads that never follow a symbolic link.

Every layer writes through here (the lowest one, so `retrieval/` and `app/` may import it):

- `atomic_write(path, data)`: a temporary file beside `path`, flushed, then `os.replace`d over it, so a reader
  sees the old file or the new one. The new file keeps the old one's mode (a 0600 `kb.toml` stays 0600);
  `private=True` (secrets, document text, questions) makes it 0600 at most, whatever it was.
- `private_dir(path)` / `open_private(path)`: 0700 folders and 0600 files for what holds document text or
  people's questions, set explicitly on the file or folder (never through the process-wide umask, which other
  threads share).
- `read_nofollow(path)`: the bytes of a regular file, refused (`LinkRefused`) when the path is a symbolic link,
  opened with `O_NOFOLLOW` so a link swapped in after a check is refused too.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
# Why a link is skipped, as `kb ingest`, the API and the Library report it.
LINK_REASON = ("a symbolic link; links are not followed (they can lead to files outside the folder given, such "
               "as secrets): copy the file itself into the folder")


class LinkRefused(OSError):
    """A symbolic link where a regular file or folder was expected: never followed. `str()` names the path."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        super().__init__(f"{self.path}: {LINK_REASON}")


def fsync_path(path: str | Path) -> None:
    """Flush a file or a folder entry to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes | str, *, private: bool = False, fsync: bool = True) -> Path:
    """Replace `path` with `data` (str: UTF-8) in one step: a reader sees the old file or the new one, never part.

    The mode: the old file's, kept (never widened); a new file's is 0644 less the umask, or 0600 with `private`
    (secrets, document text, questions), which also narrows an existing file's mode to 0600 at most. The parent
    folder is created when missing (0700 with `private`). A symbolic link at `path` is replaced by the file, never
    written through. The temporary file is removed when anything fails."""
    path = Path(path)
    body = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if private:
        private_dir(path.parent, chmod=False)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        old = path.lstat()
        mode: int | None = stat.S_IMODE(old.st_mode) if stat.S_ISREG(old.st_mode) else None
    except FileNotFoundError:
        mode = None
    if private:
        mode = PRIVATE_FILE if mode is None else mode & PRIVATE_FILE
    # Hidden, and named as an index's writer sweeps up after a crash (`retrieval.storage.writer_lock`).
    tmp = path.with_name(f".tmp-{path.name}-{secrets.token_hex(4)}")
    # Created 0600 so nothing can read it before its mode is set; a new public file gets 0644 less the umask.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE if mode is not None
                 else 0o644)
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view):]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_path(path.parent)
    return path


def private_dir(path: str | Path, *, chmod: bool = True) -> Path:
    """Make the folder `path` (and each missing parent) with mode 0700; `chmod`: set an existing `path` to 0700 too
    (a folder that is ours alone: an index, the uploads). Existing parents are left as they are (a shared data
    folder keeps its mode)."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists() and not probe.is_symlink() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            pass  # made meanwhile by another process
        else:
            os.chmod(folder, PRIVATE_DIR)  # mkdir's mode is narrowed by the umask, never widened: set it exactly
    if chmod and path not in missing:
        os.chmod(path, PRIVATE_DIR)  # an index folder named through a link: its target, as configured
    return path


def private_file(path: str | Path) -> Path:
    """Create `path` empty with mode 0600 when it does not exist, and set an existing one to 0600: for a file some
    other library then opens and writes (a SQLite database) that must never be readable by others."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    return path


def open_private(path: str | Path, mode: str = "w", encoding: str | None = "utf-8"):
    """`open(path, mode)` for writing a new file with mode 0600 (truncated when it exists; "a" appends)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)
    return os.fdopen(fd, mode, encoding=None if "b" in mode else encoding)


def make_private(folder: str | Path) -> None:
    """Set every file under `folder` to 0600 and every folder (itself included) to 0700: for a tree another
    library wrote (FAISS, BM25) before it is published. Links inside are left as they are, never followed."""
    folder = Path(folder)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            if not os.path.islink(os.path.join(root, name)):
                os.chmod(os.path.join(root, name), PRIVATE_DIR)
        for name in files:
            if not os.path.islink(os.path.join(root, name)):
                os.chmod(os.path.join(root, name), PRIVATE_FILE)
    os.chmod(folder, PRIVATE_DIR)


def read_nofollow(path: str | Path) -> bytes:
    """The bytes of the regular file at `path`. LinkRefused when `path` itself is a symbolic link (checked by the
    open itself, `O_NOFOLLOW`, so a link put there after any earlier check is refused too); other OSErrors as
    `open` raises them."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if os.path.islink(path):  # ELOOP on Linux, EMLINK on some BSDs
            raise LinkRefused(path) from exc
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IsADirectoryError(f"{path}: not a regular file")
        chunks = []
        while block := os.read(fd, 1 << 20):
            chunks.append(block)
        return b"".join(chunks)
    finally:
        os.close(fd)
