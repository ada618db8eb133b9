"""What the Library page does to the index, without Streamlit: keep uploaded files, ingest them with the same
`app.ingest_sync.sync` as `kb ingest`, delete documents, and list what the index holds.

Uploaded files are kept in one flat folder (settings `upload_dir`, shared with the API's POST /ingest) under
their cleaned file name, with a `.meta.json` sidecar carrying the access groups chosen at upload; keeping them
makes a re-upload of the same bytes a no-op and a changed file an update, exactly as `kb ingest` treats files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from app.ingest_sync import IngestReport
from app.settings import Settings
from app.uploads import delete_documents, ingest_uploads
from retrieval.embedder import Embedder
from retrieval.index import KnowledgeIndex


def parse_groups(text: str) -> list[str]:
    """'hr, it' -> ['hr', 'it']; empty -> [] (everyone may see the document)."""
    return sorted({g.strip() for g in text.replace("，", ",").split(",") if g.strip()})


def ingest_files(files: Sequence[tuple[str, bytes]], groups: Sequence[str], settings: Settings, index_dir: Path,
                 embedder: Embedder, known_sources: set[str] | frozenset[str] = frozenset(),
                 progress: Callable[[str, int, int], None] | None = None) -> IngestReport:
    """Keep the files (name, bytes) and sync them into the index: `app.uploads.ingest_uploads`, as the API does."""
    return ingest_uploads(files, groups, settings, index_dir, embedder, known_sources, progress)


def delete(doc_ids: Sequence[str], settings: Settings, index_dir: Path, embedder: Embedder) -> list[str]:
    """Remove documents and their uploaded copies: `app.uploads.delete_documents`, as the API does."""
    return delete_documents(doc_ids, settings, index_dir, embedder)


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
