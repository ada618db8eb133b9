"""Find the files an ingest should read under the paths a user gave."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .load import SIDECAR_SUFFIX, SUPPORTED_SUFFIXES


@dataclass(frozen=True)
class Discovery:
    files: list[Path] = field(default_factory=list)  # supported files, sorted, resolved
    unsupported: list[Path] = field(default_factory=list)  # files seen in folders with a suffix no loader reads
    missing: list[Path] = field(default_factory=list)  # paths given that do not exist
    roots: list[Path] = field(default_factory=list)  # resolved folders given: a sync deletes what vanished there


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def discover(paths: list[str | Path]) -> Discovery:
    """Expand files and folders (recursively; hidden files and `*.meta.json` sidecars ignored)."""
    out = Discovery()
    seen: set[Path] = set()
    for given in map(Path, paths):
        if not given.exists():
            out.missing.append(given)
            continue
        root = given.resolve()
        candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        if root.is_dir():
            out.roots.append(root)
        for path in candidates:
            if path in seen or path.name.endswith(SIDECAR_SUFFIX) or (root.is_dir() and _hidden(path, root)):
                continue
            seen.add(path)
            (out.files if path.suffix.lower() in SUPPORTED_SUFFIXES else out.unsupported).append(path)
    return out
