"""`KnowledgeIndex`: documents, chunks, the dense store and BM25 of one index folder, with its manifest.

The manifest records what the vectors mean (embedder, dimension, normalisation) and how chunks were cut; an index
is never queried or extended with a different embedder. Saving writes a complete new version (see `storage`).
Vectors live in the `VectorStore` that the given `StoreFactory` makes (`retrieval.stores`): FAISS inside each
version by default, or one Milvus collection that all versions share.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ingest.types import Chunk, Document

from .analyzer import DEFAULT, Analyzer
from .filters import Filters, matching_visible, visible
from .lexical import LexicalIndex
from .storage import current_version, new_version_dir, publish, writer_lock
from .stores.base import StoreFactory, VectorStore, allowed_by_groups
from .stores.faiss import FaissStoreFactory
from .synonyms import Expansion

FORMAT_VERSION = 1
MASKS_KEPT = 256  # lexical group masks kept per index version (`lexical_mask`)


class IndexMismatch(RuntimeError):
    """The index was built with another embedder or format. The message says how to rebuild."""

    kind = "conflict"  # app.errors maps it to an HTTP status and an exit code


class IndexNotFound(RuntimeError):
    """No index at that folder yet."""

    kind = "not_found"  # app.errors maps it to an HTTP status and an exit code


@dataclass
class DocRecord:
    """What the index knows of a document without its text: enough to decide whether a file changed."""

    doc_id: str
    source: str
    title: str
    content_hash: str
    format: str
    n_chunks: int
    acl: list[str] = field(default_factory=list)
    mtime: float | None = None
    ingested_at: float = 0.0
    fields: dict[str, str | list[str]] = field(default_factory=dict)  # its own metadata: what filters match
    updated: str | None = None  # the date it states about itself (front-matter or sidecar `updated`)

    @classmethod
    def of(cls, doc: Document, n_chunks: int) -> DocRecord:
        return cls(doc_id=doc.doc_id, source=doc.source, title=doc.title, content_hash=doc.meta["content_hash"],
                   format=doc.meta.get("format", ""), n_chunks=n_chunks, acl=list(doc.meta.get("acl", [])),
                   mtime=doc.meta.get("mtime"), ingested_at=time.time(), fields=dict(doc.meta.get("fields", {})),
                   updated=doc.meta.get("updated"))


def embedder_signature(info: dict[str, Any]) -> dict[str, Any]:
    return {"name": info["name"], "path": info.get("path"), "revision": info.get("revision"), "dim": info["dim"],
            "normalized": True, "max_seq_length": info.get("max_seq_length"),
            "query_instruction": info.get("query_instruction", "")}


class KnowledgeIndex:
    def __init__(self, root: Path, embedder: dict[str, Any], chunker: dict[str, Any],
                 stores: StoreFactory | None = None, analyzer: Analyzer = DEFAULT):
        """A new, empty index whose vectors go to a store `stores` makes (None: FAISS, flat up to 50,000) and whose
        BM25 reads text with `analyzer` (its user dictionary)."""
        self.root = Path(root)
        self.embedder = embedder_signature(embedder)
        self.chunker = dict(chunker)
        self.documents: dict[str, DocRecord] = {}
        self.chunks: dict[str, Chunk] = {}
        self.stores: StoreFactory = stores if stores is not None else FaissStoreFactory()
        self.dense: VectorStore = self.stores.create(self.embedder["dim"], self.root)
        self.analyzer = analyzer
        self.lexical = LexicalIndex(analyzer)
        self.reanalyzed = False  # the BM25 token lists were made again for another user dictionary
        # lexical masks per group set, for this version: the most recently used MASKS_KEPT (one float per chunk
        # each; with sign-in every distinct set of a user's groups is a key, so unbounded they would grow with
        # the organisation rather than the corpus)
        self._masks: OrderedDict[tuple[str, ...], np.ndarray] = OrderedDict()
        self._masks_lock = threading.Lock()
        # each lexical row's document as a number (with the numbering), for metadata filters
        self._row_docs: tuple[dict[str, int], np.ndarray] | None = None
        self.version = ""
        self.created = time.time()
        self.updated = self.created

    # ---- opening -------------------------------------------------------------------------------------------
    @staticmethod
    def read_manifest(root: Path) -> dict[str, Any] | None:
        folder = current_version(Path(root))
        if folder is None:
            return None
        return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))

    @staticmethod
    def read_documents(root: Path) -> list[DocRecord]:
        """The documents of the live version at `root` (none for a new index), without loading chunks or
        vectors: what a crawl needs to know which pages it may ask for conditionally."""
        folder = current_version(Path(root))
        if folder is None:
            return []
        with open(folder / "documents.jsonl", encoding="utf-8") as fh:
            return [DocRecord(**json.loads(line)) for line in fh if line.strip()]

    @classmethod
    def open(cls, root: Path, embedder: dict[str, Any], chunker: dict[str, Any], stores: StoreFactory | None = None,
             create: bool = True, analyzer: Analyzer = DEFAULT) -> KnowledgeIndex:
        """Load the live version at `root`, checking it was built by this embedder into the store `stores` makes
        (None: FAISS); or start an empty one (IndexNotFound when `create` is False). When the version's BM25 was
        built with another user dictionary than `analyzer`'s, its token lists are made again from the stored
        text (`reanalyzed`; no re-embedding); the next save records the new dictionary."""
        root = Path(root)
        stores = stores if stores is not None else FaissStoreFactory()
        folder = current_version(root)
        if folder is None:
            if not create:
                if (root / "milvus.db").exists():
                    raise IndexNotFound(f"no FAISS index at {root}: it holds a corpus kept in Milvus; set "
                                        "KB_VECTOR_STORE=milvus to serve it, or build a FAISS one with `kb ingest "
                                        f"PATH --index {root}`")
                raise IndexNotFound(f"no index at {root}; build one with `kb ingest PATH --index {root}`")
            return cls(root, embedder, chunker, stores, analyzer)
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        cls.check_compatible(root, manifest, embedder)
        why = stores.mismatch(folder / "dense", root)
        if why is not None:
            raise IndexMismatch(f"{why}, or rebuild it with `kb ingest PATH --index {root} --rebuild`")
        index = cls(root, embedder, manifest.get("chunker", chunker), stores, analyzer)
        index.version, index.created, index.updated = folder.name, manifest["created"], manifest["updated"]
        with open(folder / "documents.jsonl", encoding="utf-8") as fh:
            for line in fh:
                rec = DocRecord(**json.loads(line))
                index.documents[rec.doc_id] = rec
        with open(folder / "chunks.jsonl", encoding="utf-8") as fh:
            for line in fh:
                c = Chunk.from_dict(json.loads(line))
                index.chunks[c.chunk_id] = c
        index.dense = stores.load(folder / "dense", root)
        if manifest.get("analyzer", {}).get("user_dict", "") == analyzer.fingerprint:
            index.lexical = LexicalIndex.load(folder / "lexical", analyzer, list(index.chunks.values()))
        else:  # the saved token lists were cut with another dictionary: not read, made again
            index.lexical = LexicalIndex.of(index.ordered_chunks(), analyzer)
            index.reanalyzed = True
        return index

    @staticmethod
    def check_compatible(root: Path, manifest: dict[str, Any], embedder: dict[str, Any]) -> None:
        if manifest.get("format_version") != FORMAT_VERSION:
            raise IndexMismatch(f"index {root} has format {manifest.get('format_version')}, this version reads "
                                f"{FORMAT_VERSION}; rebuild it with `kb ingest PATH --index {root} --rebuild`")
        built = manifest["embedder"]
        if built["name"] != embedder["name"] or built["dim"] != embedder["dim"]:
            raise IndexMismatch(
                f"index {root} was built with embedder {built['name']!r} ({built['dim']}-d) but {embedder['name']!r} "
                f"({embedder['dim']}-d) is loaded; pass --embedder {built['name']!r} to use it as it is, or rebuild "
                f"it with `kb ingest PATH --index {root} --rebuild`")

    # ---- changes -------------------------------------------------------------------------------------------
    def replace_document(self, doc: Document, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Insert or replace one document with its chunks and their vectors."""
        self.delete_documents([doc.doc_id])
        self.dense.upsert(chunks, vectors)
        for c in chunks:
            self.chunks[c.chunk_id] = c
        self.documents[doc.doc_id] = DocRecord.of(doc, len(chunks))

    def replace_documents(self, docs: Sequence[tuple[Document, Sequence[Chunk]]], vectors: np.ndarray) -> None:
        """`replace_document` for many documents whose chunks were embedded together, in order, into `vectors`."""
        offset = 0
        for doc, chunks in docs:
            self.replace_document(doc, chunks, vectors[offset:offset + len(chunks)])
            offset += len(chunks)

    def delete_documents(self, doc_ids: Sequence[str]) -> int:
        gone = {d for d in doc_ids if d in self.documents}
        if not gone:
            return 0
        self.dense.delete(list(gone))
        for cid in [cid for cid, c in self.chunks.items() if c.doc_id in gone]:
            del self.chunks[cid]
        for d in gone:
            del self.documents[d]
        return len(gone)

    def ordered_chunks(self) -> list[Chunk]:
        """The chunks in the order BM25 rows and saved versions keep them: by document, then position."""
        return sorted(self.chunks.values(), key=lambda c: (c.doc_id, c.meta.get("position", 0)))

    def with_analyzer(self, analyzer: Analyzer) -> KnowledgeIndex:
        """This version read with another user dictionary: a copy whose BM25 token lists are made again from the
        stored text (documents, chunks and vectors are shared, not copied). The copy is for searching."""
        import copy

        twin = copy.copy(self)
        twin.analyzer, twin.reanalyzed = analyzer, True
        twin.lexical = LexicalIndex.of(self.ordered_chunks(), analyzer)
        twin._masks, twin._masks_lock, twin._row_docs = OrderedDict(), threading.Lock(), None
        return twin

    def save(self) -> Path:
        """Write a complete new version and publish it atomically (caller holds `storage.writer_lock`)."""
        ordered = self.ordered_chunks()
        self.lexical.set_chunks(ordered)
        self._masks.clear()  # lexical rows changed order
        self._row_docs = None
        self.updated = time.time()
        tmp = new_version_dir(self.root)
        with open(tmp / "documents.jsonl", "w", encoding="utf-8") as fh:
            for rec in sorted(self.documents.values(), key=lambda r: r.source):
                fh.write(json.dumps(rec.__dict__, ensure_ascii=False) + "\n")
        with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as fh:
            for c in ordered:
                fh.write(json.dumps(c.to_dict(), ensure_ascii=False) + "\n")
        self.dense.save(tmp / "dense")
        self.lexical.save(tmp / "lexical")
        manifest = {
            "format_version": FORMAT_VERSION, "embedder": self.embedder, "chunker": self.chunker,
            "counts": {"documents": len(self.documents), "chunks": len(self.chunks)},
            "dense_index": self.dense.kind, "vector_store": self.stores.name,
            "created": self.created, "updated": self.updated,
            "analyzer": {"user_dict": self.analyzer.fingerprint},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
        final = publish(self.root, tmp)
        self.version = final.name
        self.reanalyzed = False
        return final

    # ---- reading -------------------------------------------------------------------------------------------
    def lexical_mask(self, groups: Sequence[str] | None, docs: Collection[str] | None = None) -> np.ndarray | None:
        """0/1 weights over the lexical rows for the caller's groups and the documents `docs` (None: no
        restriction)."""
        mask = None
        if groups is not None:
            key = tuple(sorted(set(groups)))
            with self._masks_lock:
                mask = self._masks.get(key)
                if mask is not None:
                    self._masks.move_to_end(key)
            if mask is None:
                mask = np.array(
                    [1.0 if cid in self.chunks and allowed_by_groups(self.chunks[cid].meta.get("acl", ()), groups)
                     else 0.0 for cid in self.lexical.chunk_ids], dtype=np.float32)
                with self._masks_lock:
                    self._masks[key] = mask
                    while len(self._masks) > MASKS_KEPT:
                        self._masks.popitem(last=False)
        if docs is not None:
            if self._row_docs is None or len(self._row_docs[1]) != len(self.lexical.chunk_ids):
                codes: dict[str, int] = {}
                rows = [codes.setdefault(self.chunks[cid].doc_id, len(codes)) if cid in self.chunks else -1
                        for cid in self.lexical.chunk_ids]
                self._row_docs = (codes, np.array(rows, dtype=np.int64))
            codes, rows = self._row_docs
            wanted = np.array([codes[d] for d in docs if d in codes], dtype=np.int64)
            keep = np.isin(rows, wanted).astype(np.float32)
            mask = keep if mask is None else mask * keep
        return mask

    def readable(self, chunk_id: str, groups: Sequence[str] | None, docs: Collection[str] | None) -> bool:
        """Whether a leg's hit may be returned: its chunk is in this version's chunk table (BM25 is rebuilt at save,
        so between a change and its save a row may name a deleted chunk), its acl there admits `groups` (None: all)
        and its document is among `docs` (None: any)."""
        chunk = self.chunks.get(chunk_id)
        return (chunk is not None and allowed_by_groups(chunk.meta.get("acl", ()), groups)
                and (docs is None or chunk.doc_id in docs))

    def dense_hits(self, vectors: np.ndarray, k: int, groups: Sequence[str] | None = None,
                   docs: Collection[str] | None = None) -> list[tuple[Chunk, float]]:
        """The dense leg: up to k (chunk, inner product), best first, that `groups` may read among `docs`. The store
        filters inside its search and the hits are checked again against the chunk table: the published version's
        table is what says who may read a chunk."""
        hits = self.dense.search(vectors, k, groups, docs)[0]
        return [(self.chunks[cid], s) for cid, s in hits if self.readable(cid, groups, docs)]

    def lexical_hits(self, query: str, k: int, groups: Sequence[str] | None = None,
                     docs: Collection[str] | None = None,
                     synonyms: Sequence[Expansion] = ()) -> list[tuple[Chunk, float]]:
        """The BM25 leg: up to k (chunk, score), best first, with the query's `synonyms` each scored as one term."""
        hits = self.lexical.search(query, k, self.lexical_mask(groups, docs), synonyms)
        return [(self.chunks[cid], s) for cid, s in hits if self.readable(cid, groups, docs)]

    def fetch(self, chunk_ids: Sequence[str]) -> dict[str, Chunk]:
        """The chunks of this version with these ids (unknown ids are left out)."""
        return {cid: self.chunks[cid] for cid in chunk_ids if cid in self.chunks}

    def document_chunks(self, doc_id: str) -> list[Chunk]:
        """The chunks of document `doc_id` in this version, in no set order ([] when it is not here)."""
        return [c for c in self.chunks.values() if c.doc_id == doc_id]

    def problem(self) -> str | None:
        """Why searches cannot be served now: never, for a version read whole into memory."""
        return None

    def visible_documents(self, groups: Sequence[str] | None) -> dict[str, DocRecord]:
        """The documents a caller of `groups` may read (None: all)."""
        return visible(self.documents, groups)

    def matching_documents(self, filters: Filters | None, groups: Sequence[str] | None = None) -> set[str] | None:
        """`filters.matching_visible` over this version's documents."""
        return matching_visible(self.documents, filters, groups)

    def stats(self) -> dict[str, Any]:
        return {"documents": len(self.documents), "chunks": len(self.chunks), "dense_index": self.dense.kind,
                "version": self.version, "embedder": self.embedder["name"], "updated": self.updated}


@dataclass(frozen=True)
class IndexOpener:
    """How this installation makes and opens indexes: the store its vectors go to (`stores`; None: FAISS inside
    each version) and the analyzer its BM25 reads text with (the user dictionary). Built once from the settings
    (`app.components.index_opener`) and handed to whatever reads or writes an index (the Library, evaluation,
    benchmarks), so that nobody else decides either."""

    stores: StoreFactory | None = None
    analyzer: Analyzer = DEFAULT

    def new(self, root: Path, embedder: dict[str, Any], chunker: dict[str, Any]) -> KnowledgeIndex:
        """An empty index at `root` (nothing read from disk: a rebuild, or a synthetic index)."""
        return KnowledgeIndex(Path(root), embedder, chunker, self.stores, self.analyzer)

    def open(self, root: Path, embedder: dict[str, Any], chunker: dict[str, Any],
             create: bool = True) -> KnowledgeIndex:
        """The live version at `root` (see `KnowledgeIndex.open`)."""
        return KnowledgeIndex.open(Path(root), embedder, chunker, self.stores, create=create, analyzer=self.analyzer)

    def writing(self, root: Path):
        """The one writer's hold on `root` while the block runs (IndexLocked at once when another process
        writes). `retrieval.shared.SharedOpener` holds a lease in the shared database instead."""
        return writer_lock(Path(root))

    def published(self, root: Path) -> str | None:
        """The name of the version published at `root` now, whoever published it (None: none yet)."""
        folder = current_version(Path(root))
        return folder.name if folder is not None else None

    def read_documents(self, root: Path) -> list[DocRecord]:
        """The published version's document records, without its chunks."""
        return KnowledgeIndex.read_documents(Path(root))

    def read_manifest(self, root: Path) -> dict[str, Any] | None:
        """The published version's manifest (None: none yet)."""
        return KnowledgeIndex.read_manifest(Path(root))
