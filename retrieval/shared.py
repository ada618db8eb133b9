"""`SharedIndex`: a corpus kept in Milvus (chunks, vectors, BM25) and the shared SQL database (revisions, document
records, the writer's lease), read and written through the same faces as a folder's `KnowledgeIndex`, so that
serving processes hold models only and any number of them, on any number of machines, serve one corpus.

- Reading. `SharedOpener.open` reads the published revision R from the catalog and the document records alive at R
  (small: one per document; what metadata filters, the Library and incremental sync need); chunks stay in Milvus.
  Recall's legs (`dense_hits`, `lexical_hits`, and each synonym rule as its own BM25 search) are Milvus searches with
  one access/metadata expression; each row that comes back is checked again against the catalog: its document must
  be alive at R in the version that wrote the row, and both the document's and the chunk's groups must admit the
  caller. Queries are analysed with the user dictionary R was built with (carried in R's manifest), so a query's
  terms always match the stored ones.
- Writing. One writer at a time holds the corpus's lease in the catalog (`SharedOpener.writing`); it writes rows of
  R+1 and marks the rows it replaces, then `save` flushes Milvus and publishes R+1 in one SQL transaction
  (`retrieval.catalog`). A writer killed before that leaves R served whole; the next writer sweeps its leftovers.
- A changed user dictionary (or a rebuild) writes a new physical collection `<name>__<n>`: the rows alive at R are
  copied with new terms (no re-embedding), R+1 names it, and the alias `<name>` is moved to it after the publish.
  The collection R read stays until the next publish, so a reader still on R is never cut off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ingest.files import private_dir
from ingest.types import Chunk, Document

from .analyzer import DEFAULT, Analyzer, parse_user_dict
from .catalog import Catalog, Revision
from .filters import Filters, matching_visible, visible
from .index import FORMAT_VERSION, DocRecord, IndexNotFound, KnowledgeIndex, embedder_signature
from .lexical import field_queries
from .storage import current_version
from .stores.base import allowed_by_groups
from .stores.milvus import MilvusConfig, MilvusCorpus, MilvusStoreError, Row, is_lite
from .synonyms import Expansion

log = logging.getLogger(__name__)

# the analyzers of published revisions' user dictionaries, by fingerprint (a jieba tokenizer is slow to build)
_ANALYZERS: dict[str, Analyzer] = {}
_ANALYZERS_LOCK = threading.Lock()
PROBE_S = 2.0
_PROBES: dict[str, tuple[float, str | None]] = {}  # collection -> (when, what `problem` found)
_PROBES_LOCK = threading.Lock()


def analyzer_for(manifest: dict[str, Any], local: Analyzer) -> Analyzer:
    """The analyzer a revision's terms were made with: `local` when its dictionary is the same, else one built
    from the dictionary text the manifest carries."""
    spec = manifest.get("analyzer", {})
    fingerprint = spec.get("user_dict", "")
    if fingerprint == local.fingerprint:
        return local
    with _ANALYZERS_LOCK:
        if fingerprint not in _ANALYZERS:
            _ANALYZERS[fingerprint] = Analyzer(parse_user_dict(spec.get("user_dict_text", ""))[0]) if fingerprint \
                else DEFAULT
        return _ANALYZERS[fingerprint]


def dictionary_text(analyzer: Analyzer) -> str:
    return "\n".join(f"{e.word} {e.freq or ''} {e.tag or ''}".rstrip() for e in analyzer.entries)


class SharedChunks(Mapping[str, Chunk]):
    """The chunks of one revision, read from Milvus when asked for (a `Mapping`: `len` is the revision's count,
    lookups and iteration query Milvus)."""

    def __init__(self, index: SharedIndex, count: int):
        self._index, self._count = index, count

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, chunk_id: str) -> Chunk:
        found = self._index.fetch([chunk_id])
        if chunk_id not in found:
            raise KeyError(chunk_id)
        return found[chunk_id]

    def __iter__(self) -> Iterator[str]:
        return (c.chunk_id for c in self.values())

    def values(self):  # type: ignore[override]
        index = self._index
        return [c for c, gen in index.corpus.chunks(index.revision, sorted(index.documents)) if index.alive(c, gen)]

    def items(self):  # type: ignore[override]
        return [(c.chunk_id, c) for c in self.values()]


class SharedIndex:
    """One revision of a shared corpus (see the module docstring). Made by `SharedOpener`."""

    def __init__(self, root: Path, name: str, key: str, catalog: Catalog, corpus: MilvusCorpus,
                 embedder: dict[str, Any], chunker: dict[str, Any], analyzer: Analyzer, revision: int = 0,
                 documents: dict[str, DocRecord] | None = None, born: dict[str, int] | None = None,
                 count: int = 0, created: float | None = None, updated: float | None = None):
        self.root = Path(root)
        self.name = name  # the corpus's Milvus alias
        self.key = key  # and its name in the catalog
        self.catalog, self.corpus = catalog, corpus
        self.embedder = embedder_signature(embedder)
        self.chunker = dict(chunker)
        self.analyzer = analyzer
        self.revision = revision
        self.documents: dict[str, DocRecord] = documents if documents is not None else {}
        self._born = born if born is not None else {}  # each document's revision, for checking rows
        self.chunks = SharedChunks(self, count)
        self.created = created if created is not None else time.time()
        self.updated = updated if updated is not None else self.created
        self.reanalyzed = False
        # the writer's pending work (a writer opened by SharedOpener.writing)
        self.holder: str | None = None
        self._written: dict[str, DocRecord] = {}
        self._retired: set[str] = set()
        self._previous_collection: str | None = None

    @property
    def version(self) -> str:
        return f"r{self.revision}" if self.revision else ""

    # ---- reading ---------------------------------------------------------------------------------------------
    def alive(self, chunk: Chunk, gen: int) -> bool:
        """Whether a row belongs to this revision: its document is alive here in the version that wrote it."""
        return self._born.get(chunk.doc_id) == gen

    def _check(self, rows: list[Row], groups: Sequence[str] | None,
               docs: Collection[str] | None) -> list[tuple[Chunk, float]]:
        out = []
        for r in rows:
            rec = self.documents.get(r.chunk.doc_id)
            if (rec is not None and self.alive(r.chunk, r.gen) and allowed_by_groups(rec.acl, groups)
                    and allowed_by_groups(r.chunk.meta.get("acl", ()), groups)
                    and (docs is None or r.chunk.doc_id in docs)):
                out.append((r.chunk, r.score))
        return out

    def dense_hits(self, vectors: np.ndarray, k: int, groups: Sequence[str] | None = None,
                   docs: Collection[str] | None = None) -> list[tuple[Chunk, float]]:
        """The dense leg: up to k (chunk, inner product), best first, that `groups` may read among `docs`."""
        if not self.revision:
            return []
        return self._check(self.corpus.dense(vectors, k, self.revision, groups, docs), groups, docs)

    def lexical_hits(self, query: str, k: int, groups: Sequence[str] | None = None,
                     docs: Collection[str] | None = None,
                     synonyms: Sequence[Expansion] = ()) -> list[tuple[Chunk, float]]:
        """The BM25 leg: up to k (chunk, score), best first, words + BIGRAM_WEIGHT × bigrams as the folder index
        scores them (`retrieval.lexical`). In each field the query's terms that its `synonyms` stand for are left
        out of its own search, and each expansion is one more BM25 search of all its terms' tokens, added at the
        same weight. Milvus exposes neither term statistics nor a synonym query, so a rule here is scored as its
        tokens' BM25 summed (each its own document frequency, a phrase as its tokens), not as the one term the
        folder index scores it as; docs/VOCABULARY.md."""
        if not self.revision:
            return []
        searches: list[tuple[list[str], bool, float]] = []
        for q in field_queries(self.analyzer, query, synonyms):
            searches.append((q.terms, q.grams, q.weight))
            searches += [(list(dict.fromkeys(t for m in c for t in m)), q.grams, q.weight) for c in q.clauses]
        scores: dict[str, float] = {}
        chunks: dict[str, Chunk] = {}
        for terms, grams, weight in searches:
            found = self.corpus.lexical(terms, k, self.revision, groups, docs, grams=grams)
            for chunk, score in self._check(found, groups, docs):
                chunks[chunk.chunk_id] = chunk
                scores[chunk.chunk_id] = scores.get(chunk.chunk_id, 0.0) + weight * score
        ranked = sorted(scores.items(), key=lambda kv: -kv[1])[:k]
        return [(chunks[cid], s) for cid, s in ranked]

    def fetch(self, chunk_ids: Sequence[str]) -> dict[str, Chunk]:
        """The chunks of this revision with these ids (unknown ids are left out)."""
        if not self.revision:
            return {}
        found = self.corpus.get(chunk_ids, self.revision)
        return {cid: c for cid, (c, gen) in found.items() if self.alive(c, gen)}

    def document_chunks(self, doc_id: str) -> list[Chunk]:
        """The chunks of document `doc_id` in this revision, in no set order: Milvus is asked for its rows only,
        not the whole revision."""
        if not self.revision:
            return []
        return [c for c, gen in self.corpus.chunks(self.revision, [doc_id]) if self.alive(c, gen)]

    def problem(self) -> str | None:
        """Why searches cannot be served now (Milvus unreachable), or None; asked of Milvus at most every
        PROBE_S seconds per process, so health probes cost it nothing."""
        if not self.revision:
            return None
        now = time.monotonic()
        with _PROBES_LOCK:
            seen = _PROBES.get(self.corpus.collection)
            if seen is not None and now - seen[0] < PROBE_S:
                return seen[1]
        problem = self.corpus.problem()
        with _PROBES_LOCK:
            _PROBES[self.corpus.collection] = (time.monotonic(), problem)
        return problem

    def visible_documents(self, groups: Sequence[str] | None) -> dict[str, DocRecord]:
        """The documents a caller of `groups` may read (None: all)."""
        return visible(self.documents, groups)

    def matching_documents(self, filters: Filters | None, groups: Sequence[str] | None = None) -> set[str] | None:
        """`filters.matching_visible` over this version's documents."""
        return matching_visible(self.documents, filters, groups)

    def with_analyzer(self, analyzer: Analyzer) -> SharedIndex:
        """Itself: a revision's terms were made with its own dictionary, and its queries must be analysed with
        that one. A new dictionary reaches the corpus with the next writer's revision (`kb ingest`)."""
        return self

    def stats(self) -> dict[str, Any]:
        return {"documents": len(self.documents), "chunks": len(self.chunks), "dense_index": self.corpus.kind,
                "version": self.version, "embedder": self.embedder["name"], "updated": self.updated,
                "store": "milvus", "collection": self.corpus.collection}

    # ---- writing ---------------------------------------------------------------------------------------------
    def _need_writer(self) -> None:
        if self.holder is None:
            raise RuntimeError("this SharedIndex was opened for reading; open it inside SharedOpener.writing()")

    def _retire(self, doc_ids: Sequence[str]) -> None:
        """Mark every row of these documents that revision R+1 must not show: those alive at R, and those this
        writer already wrote for R+1 (a document written twice, or written and deleted, before publishing)."""
        ids = list(dict.fromkeys(doc_ids))
        mine = [d for d in ids if d in self._written]
        if mine:
            self.corpus.retire(mine, self.revision + 1, self.revision + 1)
        old = [d for d in ids if d in self.documents and d not in self._written]
        if old:
            self.corpus.retire(old, self.revision, self.revision + 1)
        self._retired.update(ids)

    def replace_documents(self, docs: Sequence[tuple[Document, Sequence[Chunk]]], vectors: np.ndarray) -> None:
        """Insert or replace documents whose chunks were embedded together, in order, into `vectors`."""
        self._need_writer()
        self._retire([doc.doc_id for doc, _ in docs])
        gen, rows, offset = self.revision + 1, [], 0
        for doc, chunks in docs:
            for c, v in zip(chunks, vectors[offset:offset + len(chunks)]):
                rows.append(self.corpus.row(c, v, self.analyzer.analyze(c.context_text()), gen))
            offset += len(chunks)
            rec = DocRecord.of(doc, len(chunks))
            self.documents[doc.doc_id], self._written[doc.doc_id], self._born[doc.doc_id] = rec, rec, gen
        self.corpus.insert(rows)

    def replace_document(self, doc: Document, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        self.replace_documents([(doc, chunks)], vectors)

    def delete_documents(self, doc_ids: Sequence[str]) -> int:
        self._need_writer()
        gone = [d for d in dict.fromkeys(doc_ids) if d in self.documents]
        if not gone:
            return 0
        self._retire(gone)
        for d in gone:
            self._written.pop(d, None)
            del self.documents[d]
            self._born.pop(d, None)
        return len(gone)

    def save(self) -> str:
        """Publish revision R+1: flush Milvus, then one catalog transaction; then move the alias and purge what
        no reader can see any more. Returns the new version's name."""
        self._need_writer()
        self.corpus.flush()
        self.updated = time.time()
        revision = self.revision + 1
        manifest = {
            "format_version": FORMAT_VERSION, "embedder": self.embedder, "chunker": self.chunker,
            "counts": {"documents": len(self.documents),
                       "chunks": sum(r.n_chunks for r in self.documents.values())},
            "dense_index": self.corpus.kind, "vector_store": "milvus",
            "collection": self.corpus.collection, "index_type": self.corpus.index_type,
            "created": self.created, "updated": self.updated,
            "analyzer": {"user_dict": self.analyzer.fingerprint, "user_dict_text": dictionary_text(self.analyzer)},
        }
        written = [{**r.__dict__} for r in self._written.values()]
        self.catalog.publish(self.key, revision, manifest, written, sorted(self._retired), self.holder)
        self.revision = revision
        self.chunks = SharedChunks(self, manifest["counts"]["chunks"])
        self._written, self._retired = {}, set()
        self.reanalyzed = False
        try:  # for people and tools that read the corpus by its name; kb's readers follow the catalog
            self.corpus.point_alias(self.name, exists=self._previous_collection is not None)
        except MilvusStoreError as exc:
            log.warning("revision %s is published, but the alias %s could not be pointed at %s (%s); a collection "
                        "of that name (from an older kb-search?) must be dropped for the alias to work",
                        revision, self.name, self.corpus.collection, exc)
        self.corpus.purge(revision - 1)
        self.catalog.forget_before(self.key, revision - 1)
        # a reader still on R reads R's collection: it stays until the next publish; older ones (and what a
        # killed rebuild left) go
        self.corpus.drop_siblings(f"{self.name}__", keep={self.corpus.collection, self._previous_collection})
        return self.version


def physical_name(name: str, n: int) -> str:
    return f"{name}__{n}"


@dataclass(frozen=True)
class SharedOpener:
    """How a process makes and opens the shared corpus: Milvus (`milvus`), the catalog in the shared database
    (`database_url`) and the analyzer of this process's user dictionary (what a writer applies). Same faces as
    `IndexOpener`; the index folder (`root`) is only named in messages and may be empty and read-only."""

    milvus: MilvusConfig
    database_url: str
    analyzer: Analyzer = DEFAULT
    # thread id -> this opener's lease holder in that thread, set by `writing`
    _holders: dict[int, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def catalog(self) -> Catalog:
        return Catalog.at(self.database_url)

    @property
    def name(self) -> str:
        return self.milvus.collection

    def key(self, root: Path) -> str:
        """The corpus's name in the catalog: its collection on a Milvus server (every process that reaches the
        server shares it); with a Milvus Lite file (its own Milvus), the collection in that file."""
        uri = self.milvus.uri_for(root)
        if is_lite(uri):
            return f"{self.milvus.collection}@{Path(uri).resolve().parent}"
        return self.milvus.collection

    def _corpus(self, root: Path, collection: str, dim: int, index_type: str | None = None) -> MilvusCorpus:
        if self.milvus.uri is None:  # a Milvus Lite file inside the index folder (one process)
            private_dir(Path(root))
        return MilvusCorpus(self.milvus.uri_for(root), collection, dim, index_type or self.milvus.index_type,
                            self.milvus.token)

    # ---- the faces of IndexOpener ------------------------------------------------------------------------------
    @contextmanager
    def writing(self, root: Path) -> Iterator[None]:
        """Hold the corpus's writer lease (WriterBusy at once when another writer holds it)."""
        with self.catalog.lease(self.key(root)) as holder:
            self._holders[threading.get_ident()] = holder
            try:
                yield
            finally:
                self._holders.pop(threading.get_ident(), None)

    def published(self, root: Path) -> str | None:
        """The published version's name (None: nothing published yet)."""
        n = self.catalog.current_number(self.key(root))
        return f"r{n}" if n else None

    def read_manifest(self, root: Path) -> dict[str, Any] | None:
        current = self.catalog.current(self.key(root))
        return current.manifest if current is not None else None

    def read_documents(self, root: Path) -> list[DocRecord]:
        key = self.key(root)
        current = self.catalog.current(key)
        if current is None:
            return []
        return [_record(r) for r in self.catalog.documents(key, current.number)]

    def new(self, root: Path, embedder: dict[str, Any], chunker: dict[str, Any]) -> SharedIndex:
        """An empty corpus in a new physical collection (a rebuild): published, it replaces whatever was there."""
        key = self.key(root)
        return self._new(root, key, self.catalog.current(key), embedder, chunker)

    def _new(self, root: Path, key: str, current: Revision | None, embedder: dict[str, Any],
             chunker: dict[str, Any]) -> SharedIndex:
        """`new` over the revision `current` published now."""
        revision = current.number if current is not None else 0
        corpus = self._corpus(root, physical_name(self.name, _next_number(current)), embedder["dim"])
        corpus.create()
        index = SharedIndex(root, self.name, key, self.catalog, corpus, embedder, chunker, self.analyzer, revision)
        index.holder = self._holders.get(threading.get_ident())
        if current is not None:  # every document of the old corpus dies at the rebuild's revision
            index._previous_collection = current.manifest.get("collection")
            index._retired.update(r["doc_id"] for r in self.catalog.documents(key, revision))
        return index

    def open(self, root: Path, embedder: dict[str, Any], chunker: dict[str, Any], create: bool = True) -> SharedIndex:
        """The published revision (IndexNotFound unless `create` when there is none; IndexMismatch when it was
        built by another embedder). Opened inside `writing`, it is the writer's: leftovers of a writer that died
        are swept first, and a user dictionary other than the revision's copies the rows into a new collection
        with new terms (`reanalyzed`)."""
        holder = self._holders.get(threading.get_ident())
        key = self.key(root)
        current = self.catalog.current(key)
        if current is None:
            if not create:
                if current_version(Path(root)) is not None:
                    raise IndexNotFound(f"nothing published in Milvus corpus {self.name!r} yet, but {root} holds a "
                                        "FAISS index: set KB_VECTOR_STORE=faiss to serve it, or build the corpus in "
                                        "Milvus with `kb ingest PATH --rebuild`")
                raise IndexNotFound(f"nothing published in Milvus corpus {self.name!r} yet (Milvus at "
                                    f"{self.milvus.uri_for(root)}); build it with `kb ingest PATH`")
            if holder is None:
                return SharedIndex(root, self.name, key, self.catalog,
                                   self._corpus(root, physical_name(self.name, 1), embedder["dim"]),
                                   embedder, chunker, self.analyzer)
            return self._new(root, key, None, embedder, chunker)
        manifest = current.manifest
        KnowledgeIndex.check_compatible(Path(f"corpus {self.name}"), manifest, embedder)
        records = self.catalog.documents(key, current.number)
        docs = {r["doc_id"]: _record(r) for r in records}
        born = {r["doc_id"]: int(r["born"]) for r in records}
        corpus = self._corpus(root, manifest["collection"], embedder["dim"], manifest.get("index_type"))
        analyzer = analyzer_for(manifest, self.analyzer) if holder is None else self.analyzer
        index = SharedIndex(root, self.name, key, self.catalog, corpus, embedder, manifest.get("chunker", chunker),
                            analyzer, current.number, docs, born, manifest["counts"]["chunks"], manifest["created"],
                            manifest["updated"])
        if holder is None:
            return index
        index.holder = holder
        index._previous_collection = corpus.collection
        corpus.check()
        corpus.sweep(current.number)
        # another user dictionary means other terms; a collection without the bigram field gets one: either way
        # the rows are copied into a new collection (vectors kept), published by this writer's next save
        if manifest.get("analyzer", {}).get("user_dict", "") != self.analyzer.fingerprint or not corpus.has_grams():
            fresh = self._corpus(root, physical_name(self.name, _next_number(current)), embedder["dim"],
                                 manifest.get("index_type"))
            fresh.create()
            fresh.copy_from(corpus, current.number, sorted(docs), self.analyzer.analyze)
            index.corpus, index.reanalyzed = fresh, True
        return index


def _record(row: dict[str, Any]) -> DocRecord:
    data = {k: v for k, v in row.items() if k != "born"}
    return DocRecord(**data)


def _next_number(current) -> int:
    if current is None:
        return 1
    name = current.manifest.get("collection", "")
    tail = name.rsplit("__", 1)[-1]
    return int(tail) + 1 if tail.isdigit() else 1
