"""Find the files an ingest should read under the paths a user gave."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .files import LINK_REASON
from .load import SIDECAR_SUFFIX, SUPPORTED_SUFFIXES


@dataclass(frozen=True)
class Discovery:
    files: list[Path] = field(default_factory=list)  # supported files, sorted, resolved
    unsupported: list[Path] = field(default_factory=list)  # files seen in folders with a suffix no loader reads
    missing: list[Path] = field(default_factory=list)  # paths given that do not exist
    roots: list[Path] = field(default_factory=list)  # resolved folders given: a sync deletes what vanished there
    links: list[tuple[Path, str]] = field(default_factory=list)  # symbolic links met (never followed), and why


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def discover(paths: list[str | Path]) -> Discovery:
    """Expand files and folders (recursively; hidden files and `*.meta.json` sidecars ignored).

    Symbolic links are never followed: a linked file or folder inside a folder given, and a file given that is a
    link, go to `links` with the reason (a link `notes.txt → kb.toml` would otherwise publish a secret). A folder
    given may itself be a link (the folder a user named); nothing found inside it leads out of it."""
    out = Discovery()
    seen: set[Path] = set()
    for given in map(Path, paths):
        if given.is_symlink() and not given.is_dir():  # a link to a file, or a dangling one
            out.links.append((given.absolute(), LINK_REASON))
            continue
        if not given.exists():
            out.missing.append(given)
            continue
        root = given.resolve()
        candidates = [root] if root.is_file() else _walk(root, out)
        if root.is_dir():
            out.roots.append(root)
        for path in candidates:
            if path in seen or path.name.endswith(SIDECAR_SUFFIX) or (root.is_dir() and _hidden(path, root)):
                continue
            seen.add(path)
            (out.files if path.suffix.lower() in SUPPORTED_SUFFIXES else out.unsupported).append(path)
    return out


def _walk(root: Path, out: Discovery) -> list[Path]:
    """The regular files under `root`, sorted; links met (files or folders, not hidden) go to `out.links`, and a
    linked folder is not entered."""
    files = []
    for folder, dirs, names in os.walk(root):  # followlinks=False: a linked folder is listed, never entered
        here = Path(folder)
        for name in sorted(dirs + names):
            path = here / name
            if path.is_symlink():
                if not _hidden(path, root) and not name.endswith(SIDECAR_SUFFIX):  # load() names a linked sidecar
                    out.links.append((path, LINK_REASON))
            elif name in names and path.is_file():
                files.append(path)
    return sorted(files)
