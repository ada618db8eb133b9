"""Uploaded files, for the API's POST /ingest and the app's Library page alike.

Uploads are kept in one flat folder (setting `upload_dir`) under their cleaned file name, with a `.meta.json`
sidecar carrying the access groups chosen at upload. Keeping them makes a re-upload of the same bytes a no-op and
a changed file an update, exactly as `kb ingest` treats files. Nothing a client sends can escape the folder:
directory parts of a name are dropped whichever separator they use, and hidden names, sidecar names and names
with control characters are refused (ValueError naming the file and the fix).
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from ingest.identity import source_of
from ingest.load import SIDECAR_SUFFIX
from ingest.loaders import LOADERS
from retrieval.embedder import Embedder

from .ingest_sync import IngestReport, remove_documents, sync
from .settings import Settings


def safe_name(name: str | None) -> str:
    """The file-name part of `name` (`../../x.md` → `x.md`, `C:\\a\\y.pdf` → `y.pdf`); ValueError when unusable."""
    base = unicodedata.normalize("NFC", PurePosixPath((name or "").replace("\\", "/")).name).strip()
    if not base or base in {".", ".."} or base.startswith("."):
        raise ValueError(f"file name {name!r} is not usable: give the file a plain name like policy.pdf")
    if any(unicodedata.category(ch).startswith("C") for ch in base) or len(base.encode()) > 255:
        raise ValueError(f"file name {name!r} has control characters or is over 255 bytes: rename the file")
    if base.endswith(SIDECAR_SUFFIX):
        raise ValueError(f"{base}: sidecar files are written by the server; choose access groups instead")
    return base


def supported(name: str) -> bool:
    return Path(name).suffix.lower() in LOADERS


def unsupported_reason(name: str) -> str:
    return f"unsupported file type '{Path(name).suffix or name}': send .html, .pdf, .docx, .md or .txt"


def save_upload(folder: Path, name: str, data: bytes, groups: Sequence[str]) -> Path:
    """Write `folder/<safe name>` atomically, and its sidecar with `groups` (removed when there are none)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder.resolve() / safe_name(name)
    tmp = target.with_name(f".{target.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    side = target.with_name(target.name + SIDECAR_SUFFIX)
    if groups:
        side.write_text(json.dumps({"acl": list(groups)}), encoding="utf-8")
    else:
        side.unlink(missing_ok=True)
    return target


def remove_upload(path: Path) -> None:
    for p in (path, path.with_name(path.name + SIDECAR_SUFFIX)):
        p.unlink(missing_ok=True)


def ingest_uploads(files: Sequence[tuple[str, bytes]], groups: Sequence[str], settings: Settings, index_dir: Path,
                   embedder: Embedder, known_sources: set[str] | frozenset[str] = frozenset(),
                   progress: Callable[[str, int, int], None] | None = None) -> IngestReport:
    """Keep the files (name, bytes) and sync them into the index; nothing else in the index changes.

    Unsupported types and unusable names are skipped with their reason without being written. A file the
    pipeline skipped is not kept (it would fail again on every ingest) unless it is in `known_sources` (the index
    still holds an earlier version of it). Raises IndexLocked / IndexMismatch like `sync`.
    """
    folder = Path(settings.upload_dir)
    refused: list[tuple[str, str]] = []
    saved: list[Path] = []
    for name, data in files:
        if not supported(name):
            refused.append((name, unsupported_reason(name)))
            continue
        try:
            saved.append(save_upload(folder, name, data, groups))
        except ValueError as exc:
            refused.append((name, str(exc)))
    s = settings
    report = sync(saved, index_dir, embedder, s.chunk_max_tokens, s.chunk_overlap, int(s.max_file_mb * 2**20),
                  s.ann_threshold, delete=False, progress=progress, milvus=s.milvus_config()) \
        if saved else IngestReport()
    for file, _reason in report.skipped:
        if file not in known_sources:
            remove_upload(Path(file))
    report.skipped = refused + report.skipped
    return report


def delete_documents(doc_ids: Sequence[str], settings: Settings, index_dir: Path, embedder: Embedder) -> list[str]:
    """Remove documents from the index (a new version is published) and their uploaded copies; returns sources."""
    sources = remove_documents(index_dir, embedder, doc_ids, settings.ann_threshold, milvus=settings.milvus_config())
    uploads = source_of(Path(settings.upload_dir)) + "/"
    for src in sources:
        if src.startswith(uploads):  # an uploaded copy would come back with the next ingest of the folder
            remove_upload(Path(src))
    return sources
