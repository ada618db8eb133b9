"""What the Library page does to the index, without Streamlit: keep uploaded files, ingest them with the same
`app.ingest_sync.sync` as `kb ingest`, delete documents, and list what the index holds.

Uploaded files are kept in one flat folder (settings `upload_dir`, shared with the API's POST /ingest) under
their cleaned file name, with a `.meta.json` sidecar carrying the access groups chosen at upload; keeping them
makes a re-upload of the same bytes a no-op and a changed file an update, exactly as `kb ingest` treats files.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path, PurePosixPath

from app.ingest_sync import IngestReport, remove_documents, sync
from app.settings import Settings
from ingest.identity import source_of
from ingest.load import SIDECAR_SUFFIX
from retrieval.embedder import Embedder
from retrieval.index import KnowledgeIndex


def clean_name(name: str) -> str:
    """The file-name part of a browser-sent name; ValueError naming it when nothing usable is left."""
    base = unicodedata.normalize("NFC", PurePosixPath(name.replace("\\", "/")).name).strip()
    if not base or base.startswith(".") or base.endswith(SIDECAR_SUFFIX) \
            or any(unicodedata.category(ch).startswith("C") for ch in base):
        raise ValueError(f"file name {name!r} is not usable: rename the file to a plain name like policy.pdf")
    return base


def parse_groups(text: str) -> list[str]:
    """'hr, it' -> ['hr', 'it']; empty -> [] (everyone may see the document)."""
    return sorted({g.strip() for g in text.replace("，", ",").split(",") if g.strip()})


def save_upload(folder: Path, name: str, data: bytes, groups: Sequence[str]) -> Path:
    """Write `folder/<clean name>` atomically, and its sidecar with `groups` (removed when there are none)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder.resolve() / clean_name(name)
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


def ingest_files(files: Sequence[tuple[str, bytes]], groups: Sequence[str], settings: Settings, index_dir: Path,
                 embedder: Embedder, known_sources: set[str] | frozenset[str] = frozenset(),
                 progress: Callable[[str, int, int], None] | None = None) -> IngestReport:
    """Keep the files (name, bytes) and sync them into the index; nothing else in the index changes. A file the
    pipeline skipped is not kept, unless it is in `known_sources` (the index still holds an earlier version)."""
    folder = Path(settings.upload_dir)
    report_names: list[tuple[str, str]] = []
    saved: list[Path] = []
    for name, data in files:
        try:
            saved.append(save_upload(folder, name, data, groups))
        except ValueError as exc:
            report_names.append((name, str(exc)))
    s = settings
    report = sync(saved, index_dir, embedder, s.chunk_max_tokens, s.chunk_overlap, int(s.max_file_mb * 2**20),
                  s.ann_threshold, delete=False, progress=progress) if saved else IngestReport()
    for file, _reason in report.skipped:
        if file not in known_sources:  # a broken upload is not kept: it would fail again on every ingest
            remove_upload(Path(file))
    report.skipped = report_names + report.skipped
    return report


def delete(doc_ids: Sequence[str], settings: Settings, index_dir: Path, embedder: Embedder) -> list[str]:
    """Remove documents from the index (a new version is published) and their uploaded copies; returns sources."""
    sources = remove_documents(index_dir, embedder, doc_ids, settings.ann_threshold)
    uploads = source_of(Path(settings.upload_dir)) + "/"
    for src in sources:
        if src.startswith(uploads):  # an uploaded copy would come back with the next ingest of the folder
            remove_upload(Path(src))
    return sources


def documents(index: KnowledgeIndex | None, status: dict[str, str] | None = None) -> list[dict]:
    """One row per document, by source: title, file, format, chunks, access groups, date ingested, status
    (what the last upload in this session did to it, else "indexed")."""
    if index is None:
        return []
    status = status or {}
    return [{"Title": rec.title, "File": Path(rec.source).name, "Format": rec.format, "Chunks": rec.n_chunks,
             "Access": ", ".join(rec.acl) or "everyone",
             "Ingested": datetime.fromtimestamp(rec.ingested_at).strftime("%Y-%m-%d %H:%M"),
             "Status": status.get(rec.source, "indexed"), "Source": rec.source, "doc_id": rec.doc_id}
            for rec in sorted(index.documents.values(), key=lambda r: r.source)]
