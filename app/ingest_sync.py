"""`kb ingest` as a sync: make the index match the given files and folders.

New files are added, changed files (content or sidecar) re-chunked and re-embedded, files gone from the given
folders deleted (unless `delete=False`), unchanged files cost one read and one hash. Broken files are skipped with
a reason and keep whatever version the index already had. Nothing is published unless something changed, and
what is published is a complete new version (see `retrieval.storage`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ingest import IngestError, chunk, discover, fingerprint, load
from ingest.identity import source_of
from retrieval.embedder import Embedder
from retrieval.index import KnowledgeIndex
from retrieval.storage import writer_lock
from retrieval.vector_store import MilvusConfig

EXIT_OK = 0
EXIT_SKIPPED = 3  # some files were skipped; everything else was ingested

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class IngestReport:
    files_seen: int = 0
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    deleted: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    chunks_written: int = 0
    total_documents: int = 0
    total_chunks: int = 0
    index_version: str = ""
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.deleted)

    @property
    def exit_code(self) -> int:
        return EXIT_SKIPPED if self.skipped else EXIT_OK

    def to_dict(self) -> dict:
        return {**self.__dict__, "skipped": [{"file": f, "reason": r} for f, r in self.skipped],
                "exit_code": self.exit_code}


def chunker_settings(embedder: Embedder, max_tokens: int, overlap: int) -> dict:
    """Chunks must fit the embedder's window: the budget is the smaller of the setting and its max_seq_length."""
    return {"max_tokens": min(max_tokens, embedder.max_seq_length), "overlap": overlap, "counter": embedder.name}


def _under(source: str, roots: Sequence[Path]) -> bool:
    return any(source.startswith(root.as_posix().rstrip("/") + "/") for root in roots)


def sync(paths: Sequence[str | Path], index_dir: Path, embedder: Embedder, max_tokens: int = 512,
         overlap: int = 32, max_bytes: int = 20 * 2**20, ann_threshold: int = 50_000, delete: bool = True,
         rebuild: bool = False, progress: Progress | None = None, milvus: MilvusConfig | None = None
         ) -> IngestReport:
    """Bring the index at `index_dir` in line with `paths`, its vectors in Milvus when `milvus` is given (else
    FAISS). Raises IndexLocked / IndexMismatch for the caller; `rebuild` starts over whatever the index was."""
    started = time.perf_counter()
    tick = progress or (lambda stage, done, total: None)
    report = IngestReport()
    found = discover(list(paths))
    report.skipped += [(str(p), "no such file or folder") for p in found.missing]
    report.skipped += [(str(p), f"unsupported file type '{p.suffix or p.name}'") for p in found.unsupported]
    report.files_seen = len(found.files)
    chunker = chunker_settings(embedder, max_tokens, overlap)
    with writer_lock(Path(index_dir)):
        if rebuild:  # not opened: a rebuild is how an index moves to another embedder or vector store
            index = KnowledgeIndex(Path(index_dir), embedder.info(), chunker, ann_threshold, milvus)
        else:
            index = KnowledgeIndex.open(Path(index_dir), embedder.info(), chunker, ann_threshold, milvus=milvus)
        rechunk_all = index.chunker != chunker
        index.chunker = chunker
        by_source = {rec.source: rec for rec in index.documents.values()}

        pending = []  # (doc, chunks, is_new)
        for done, path in enumerate(found.files, start=1):
            tick("read", done, len(found.files))
            source = source_of(path)
            known = by_source.get(source)
            try:
                if known and not rechunk_all and known.content_hash == fingerprint(path):
                    report.unchanged += 1
                    continue
                doc = load(path, max_bytes)
                chunks = chunk(doc, embedder.count_tokens, chunker["max_tokens"], overlap)
            except IngestError as exc:
                report.skipped.append((exc.path, exc.reason))
                continue
            except (OSError, ValueError) as exc:
                report.skipped.append((source, str(exc)))
                continue
            pending.append((doc, chunks, known is None))

        texts = [c.context_text() for _, chunks, _ in pending for c in chunks]
        vectors = embedder.embed_passages(texts, show_progress=progress is not None and len(texts) > 64)
        index.replace_documents([(doc, chunks) for doc, chunks, _ in pending], vectors)
        for doc, _, is_new in pending:
            (report.added if is_new else report.updated).append(doc.source)
        report.chunks_written = len(texts)

        if delete:
            present = {source_of(p) for p in found.files}
            given_files = {source_of(p) for p in map(Path, paths) if not p.is_dir()}
            gone = [rec for rec in index.documents.values()
                    if rec.source not in present and (_under(rec.source, found.roots) or rec.source in given_files)]
            index.delete_documents([rec.doc_id for rec in gone])
            report.deleted = [rec.source for rec in gone]

        if report.changed or rebuild or index.version == "":
            tick("save", 0, 1)
            index.save()
        report.total_documents, report.total_chunks = len(index.documents), len(index.chunks)
        report.index_version = index.version
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def remove_documents(index_dir: Path, embedder: Embedder, doc_ids: Sequence[str],
                     ann_threshold: int = 50_000, milvus: MilvusConfig | None = None) -> list[str]:
    """Delete documents by id and publish a new version; returns the sources removed (unknown ids are ignored)."""
    with writer_lock(Path(index_dir)):
        index = KnowledgeIndex.open(Path(index_dir), embedder.info(), {}, ann_threshold, create=False, milvus=milvus)
        sources = [index.documents[d].source for d in doc_ids if d in index.documents]
        if index.delete_documents(list(doc_ids)):
            index.save()
    return sources
