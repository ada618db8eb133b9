"""`MilvusCorpus`: one Milvus collection that holds everything a search reads: chunk text and card fields, access
groups, the dense vector, and BM25 computed by Milvus's own BM25 function.

The same URI scheme as pymilvus: a path ending in `.db` is an embedded Milvus Lite file (one process: tests and
laptops); `http://host:19530` is a Milvus standalone or cluster (several serving processes and machines). A row is
a chunk as of one revision of the corpus::

    row_id  VARCHAR primary key (chunk_id#gen)   chunk_id, doc_id  VARCHAR
    acl     ARRAY<VARCHAR>                        public  BOOL (acl is empty: everyone may read it)
    gen     INT64: the revision that wrote it     died    INT64: the revision that replaced or removed it (LIVE: none)
    chunk   VARCHAR: the chunk as JSON (text, title, section, page, meta: what a card shows and the reranker reads)
    terms   VARCHAR: the BM25 terms of the chunk (see below)      sparse  SPARSE_FLOAT_VECTOR = BM25(terms)
    vector  FLOAT_VECTOR, inner product

A reader at revision R searches `gen <= R and died > R`: a running ingest writes rows of R+1 and marks the rows it
replaces `died = R+1`, so until R+1 is published every reader keeps all of R, and a writer that dies leaves R whole
(the next writer sweeps its rows and marks). Rows that died at or before the revision before last are purged.

Groups are a filtered field, not partitions: `public or array_contains_any(acl, [...])` becomes a bitset applied
inside both the vector and the BM25 search, so a caller always gets its top k among the chunks it may read.

BM25 terms. Text is analysed here, by the same analyzer as the embedded bm25s index (jieba in search mode with the
corpus's user dictionary, Snowball-stemmed English, one stop-word list), and each term is written as an opaque ASCII
word (`t` + 12 hex digits of its hash) for Milvus's `standard` tokenizer to pass through unchanged. So Milvus keeps
the statistics, the inverted index and the scoring (k1 = 0.9, b = 0.4, as bm25s), while the terms are exactly
bm25s's on every server version: the jieba and stemmer filters differ between Milvus Lite and servers (Lite has
only the `stop` filter), and a jieba `dict` on the server would change the tokenizer of its whole process. A changed
user dictionary therefore means new terms: the rows are copied into a new collection with them (no re-embedding)
and the corpus's alias is switched (`retrieval.shared`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ingest.types import Chunk

from ..analyzer import cjk_bigrams

log = logging.getLogger(__name__)

INDEX_TYPES = ("FLAT", "HNSW", "IVF_FLAT", "DISKANN", "AUTOINDEX")
HNSW_M = 32  # as the FAISS store
HNSW_EF_CONSTRUCTION = 200
IVF_NLIST, IVF_NPROBE = 1024, 32
K1, B = 0.9, 0.4  # as retrieval.lexical
MAX_TOP_K = 16_384  # Milvus's own limit on k
MAX_GROUPS, MAX_GROUP_CHARS, MAX_ID_CHARS, MAX_TEXT_BYTES = 64, 256, 4096, 65_535
LIVE = 2 ** 62  # `died` of a row no revision has replaced
WRITE_BATCH = 500  # rows per insert (a gRPC message stays far below Milvus's 64 MiB limit at 1024-d)
ID_BATCH = 200  # document ids per expression
QUERY_LIMIT = 16_384  # rows one query returns at most (Milvus's limit)
TIMEOUT_S = 20.0  # per call: a Milvus that stopped answering is reported, not waited for
CONNECT_S = 5.0  # to connect
FIELDS = ("row_id", "chunk_id", "doc_id", "acl", "public", "gen", "died", "chunk", "terms", "vector", "sparse")
# The bigram field (`retrieval.lexical`): a collection made before it has neither, and is served by its words alone
# until the next writer copies its rows into a collection that has them (`retrieval.shared`).
GRAM_FIELDS = ("grams", "sparse_grams")

_CLIENTS: dict[tuple[str, str], Any] = {}  # one client per server and credentials, shared by every corpus object
_CLIENTS_LOCK = threading.Lock()


class MilvusStoreError(RuntimeError):
    """Milvus cannot be reached or the collection does not fit this corpus. The message says how to fix it."""

    kind = "not_ready"  # app.errors maps it to an HTTP status and an exit code


def _literal(value: str) -> str:
    """A Milvus expression string literal (double-quoted, backslash and quote escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _list(values: Iterable[str]) -> str:
    return "[" + ", ".join(_literal(v) for v in values) + "]"


def is_lite(uri: str) -> bool:
    """pymilvus's own rule: a URI ending in .db is a Milvus Lite file."""
    return uri.endswith(".db")


def term_word(term: str) -> str:
    """One analyzer term as a word Milvus's standard tokenizer keeps whole, on every server version."""
    return "t" + hashlib.blake2b(term.encode("utf-8"), digest_size=6).hexdigest()


def terms_text(terms: Sequence[str]) -> str:
    """The `terms` field (or a BM25 query) for these analyzer terms, repeats kept (they are term frequency)."""
    return " ".join(term_word(t) for t in terms)


def _grams_text(chunk: Chunk) -> str:
    """The `grams` field of `chunk`: its Chinese bigrams as opaque words (`terms_text`)."""
    return _fitted(terms_text(cjk_bigrams(chunk.context_text())))


def _fitted(words: str) -> str:
    """`words` cut to what a Milvus VARCHAR holds: only an absurd chunk (thousands of terms) gets cut, keeping its
    first terms."""
    while len(words) > MAX_TEXT_BYTES:
        words = words[:words.rfind(" ", 0, MAX_TEXT_BYTES)]
    return words


def visible(revision: int) -> str:
    """The rows of revision `revision`."""
    return f"gen <= {int(revision)} and died > {int(revision)}"


def readable_by(groups: Sequence[str] | None, docs: Collection[str] | None) -> str:
    """The expression for `groups` (None: anyone) and the documents `docs` (None: any), to AND with `visible`."""
    expr = ""
    if groups is not None:
        wanted = sorted({str(g) for g in groups})
        expr += f" and (public or array_contains_any(acl, {_list(wanted)}))" if wanted else " and public"
    if docs is not None:
        expr += f" and doc_id in {_list(sorted(docs))}"
    return expr


@dataclass(frozen=True)
class Row:
    """A search hit: the chunk as stored, its score, the revision that wrote it."""

    chunk: Chunk
    score: float
    gen: int


def _client(uri: str, token: str | None) -> Any:
    key = (uri, token or "")
    with _CLIENTS_LOCK:
        if key not in _CLIENTS:
            from pymilvus import MilvusClient

            # pymilvus logs every failed call with its traceback (and each retry of a lost connection), and sets
            # its loggers' levels when it is imported: quieted after that. Each failure here is raised as a
            # MilvusStoreError naming the server and the fix, and answered as such.
            for name in ("pymilvus", "pymilvus.milvus_client"):
                logging.getLogger(name).setLevel(logging.CRITICAL)

            try:
                _CLIENTS[key] = MilvusClient(uri=uri, token=token or "", timeout=CONNECT_S)
            except Exception as exc:  # noqa: BLE001 — pymilvus raises several kinds; all mean "not reachable"
                if is_lite(uri) and "lock" in str(exc).lower():
                    raise MilvusStoreError(f"the Milvus Lite file {uri} is open in another process (Lite serves one "
                                           "process at a time); stop it, or run a Milvus server and set "
                                           "KB_MILVUS_URI=http://host:19530 for several") from exc
                raise MilvusStoreError(f"Milvus at {uri} cannot be reached ({exc}); check KB_MILVUS_URI and that "
                                       "Milvus is up") from exc
        return _CLIENTS[key]


def _forget_client(uri: str, token: str | None) -> None:
    with _CLIENTS_LOCK:
        client = _CLIENTS.pop((uri, token or ""), None)
    if client is not None:
        try:
            client.close()
        except Exception:  # noqa: BLE001 — it is being dropped because it failed
            pass


class MilvusCorpus:
    """The rows of one physical Milvus collection. Cheap `__init__`: nothing connects before the first call; every
    failure to reach Milvus is a `MilvusStoreError` naming the server."""

    def __init__(self, uri: str, collection: str, dim: int, index_type: str = "HNSW", token: str | None = None):
        if index_type not in INDEX_TYPES:
            raise ValueError(f"milvus index_type must be one of {', '.join(INDEX_TYPES)}; got {index_type!r} "
                             "(set KB_MILVUS_INDEX)")
        check_name(collection)
        self.uri, self.collection, self.dim, self.index_type, self.token = str(uri), collection, dim, index_type, token
        self._grams: bool | None = None  # whether the collection has the bigram field (asked once)

    @property
    def kind(self) -> str:
        return f"milvus-{self.index_type.lower()}"

    # ---- calls -----------------------------------------------------------------------------------------------
    def _call(self, what: str, fn, *args, **kwargs):
        from pymilvus import MilvusException

        client = _client(self.uri, self.token)
        try:
            try:
                return getattr(client, fn)(*args, timeout=TIMEOUT_S, **kwargs)
            except MilvusException as exc:
                if not _released(exc):
                    raise
                # a restarted Milvus Lite (or a collection someone released) must be loaded again: once, then on
                log.warning("Milvus collection %s at %s was not loaded; loading it", self.collection, self.uri)
                client.load_collection(self.collection, timeout=TIMEOUT_S)
                return getattr(client, fn)(*args, timeout=TIMEOUT_S, **kwargs)
        except MilvusException as exc:
            if _unreachable(exc):
                _forget_client(self.uri, self.token)  # the next call connects afresh (the server may be back)
                raise MilvusStoreError(f"Milvus at {self.uri} did not answer ({what}): {exc.message}; check that "
                                       "it is up") from exc
            raise MilvusStoreError(f"Milvus at {self.uri} refused to {what} in {self.collection!r}: "
                                   f"{exc.message}") from exc
        except Exception as exc:  # noqa: BLE001 — gRPC errors: the server went away
            _forget_client(self.uri, self.token)
            raise MilvusStoreError(f"Milvus at {self.uri} did not answer ({what}): {exc}; check that it is "
                                   "up") from exc

    def lite(self) -> bool:
        """Whether this is Milvus Lite (a file or `milvus-lite server`): it filters in Python and has no scalar
        indexes."""
        return is_lite(self.uri) or str(self._call("ask its version", "get_server_version")).startswith("milvus_lite")

    def problem(self) -> str | None:
        """Why this collection cannot be searched now (Milvus unreachable, the collection gone), or None."""
        try:
            return None if self.exists() else f"the Milvus collection {self.collection} is gone"
        except MilvusStoreError as exc:
            return str(exc)

    def exists(self) -> bool:
        return bool(self._call("look for the collection", "has_collection", self.collection))

    def has_grams(self) -> bool:
        """Whether the collection has the bigram field (one made by an older kb-search has not)."""
        if self._grams is None:
            desc = self._call("describe the collection", "describe_collection", self.collection)
            self._grams = all(f in {d["name"] for d in desc["fields"]} for f in GRAM_FIELDS)
        return self._grams

    def _stored(self) -> tuple[str, ...]:
        """The fields a row is written with (not those Milvus computes)."""
        return FIELDS[:-1] + (("grams",) if self.has_grams() else ())

    def create(self) -> None:
        """Create the collection (dropping one of that name first)."""
        from pymilvus import DataType, Function, FunctionType

        if self.exists():
            self._call("drop the collection", "drop_collection", self.collection)
        client = _client(self.uri, self.token)
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("row_id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_CHARS + 24)
        schema.add_field("chunk_id", DataType.VARCHAR, max_length=MAX_ID_CHARS)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=MAX_ID_CHARS)
        schema.add_field("acl", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=MAX_GROUPS,
                         max_length=MAX_GROUP_CHARS)
        schema.add_field("public", DataType.BOOL)
        schema.add_field("gen", DataType.INT64)
        schema.add_field("died", DataType.INT64)
        schema.add_field("chunk", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
        schema.add_field("terms", DataType.VARCHAR, max_length=MAX_TEXT_BYTES, enable_analyzer=True,
                         analyzer_params={"tokenizer": "standard"})
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["terms"],
                                     output_field_names=["sparse"]))
        schema.add_field("grams", DataType.VARCHAR, max_length=MAX_TEXT_BYTES, enable_analyzer=True,
                         analyzer_params={"tokenizer": "standard"})
        schema.add_field("sparse_grams", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(Function(name="bm25_grams", function_type=FunctionType.BM25,
                                     input_field_names=["grams"], output_field_names=["sparse_grams"]))

        lite = self.lite()

        def index_params(scalars: tuple[str, ...]):
            params = client.prepare_index_params()
            build = {"HNSW": {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION},
                     "IVF_FLAT": {"nlist": IVF_NLIST}}.get(self.index_type, {})
            params.add_index("vector", index_type=self.index_type, metric_type="IP", params=build)
            for sparse in ("sparse", "sparse_grams"):
                params.add_index(sparse, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                                 params={"bm25_k1": K1, "bm25_b": B})
            if lite:
                # pymilvus sends index parameters as separate keys, which servers read; Milvus Lite 3.2 reads
                # only a JSON `params` key and would otherwise score BM25 with k1 = 1.5, b = 0.75
                for spec, tuned in zip(params, (build, {"bm25_k1": K1, "bm25_b": B}, {"bm25_k1": K1, "bm25_b": B})):
                    spec._configs["params"] = tuned
            for name in scalars:
                params.add_index(name, index_type="INVERTED")
            return params

        # the terms of every filter; Milvus Lite (a file, or its server) scans scalars anyway
        scalars = () if lite else ("doc_id", "public", "gen", "died", "acl")
        # Strong: a search sees every write acknowledged before it (a writer's own checks, readers right after a
        # publish). Bounded staleness would be cheaper on a busy cluster but could miss a new revision.
        try:
            self._call("create the collection", "create_collection", self.collection, schema=schema,
                       index_params=index_params(scalars), consistency_level="Strong")
        except MilvusStoreError as exc:
            if "acl" not in scalars or "scalar index" not in str(exc):
                raise
            # a server without scalar indexes on ARRAY fields (Milvus Lite's server): the group filter scans
            log.warning("Milvus at %s refused an index on the acl field (%s); the group filter will scan it",
                        self.uri, exc)
            self._call("drop the collection", "drop_collection", self.collection)
            self._call("create the collection", "create_collection", self.collection, schema=schema,
                       index_params=index_params(tuple(n for n in scalars if n != "acl")),
                       consistency_level="Strong")
        self._grams = True

    def check(self) -> None:
        """MilvusStoreError unless the collection exists and was made for this corpus's rows and dimension."""
        if not self.exists():
            raise MilvusStoreError(f"Milvus collection {self.collection!r} at {self.uri} is gone; rebuild the corpus "
                                   "with `kb ingest PATH --rebuild`")
        desc = self._call("describe the collection", "describe_collection", self.collection)
        fields = {f["name"]: f for f in desc["fields"]}
        self._grams = all(f in fields for f in GRAM_FIELDS)  # what `has_grams` would ask Milvus again
        missing = set(FIELDS) - set(fields)
        if missing:
            raise MilvusStoreError(f"Milvus collection {self.collection!r} at {self.uri} was not made by this "
                                   f"version of kb-search (no field {', '.join(sorted(missing))}); set "
                                   "KB_MILVUS_COLLECTION to another name, or rebuild with `kb ingest PATH --rebuild`")
        dim = int(fields["vector"]["params"]["dim"])
        if dim != self.dim:
            raise MilvusStoreError(f"Milvus collection {self.collection!r} at {self.uri} holds {dim}-d vectors but "
                                   f"the embedder gives {self.dim}-d; rebuild with `kb ingest PATH --rebuild`")

    def drop(self) -> None:
        if self.exists():
            self._call("drop the collection", "drop_collection", self.collection)

    def drop_siblings(self, prefix: str, keep: Collection[str | None]) -> None:
        """Drop the collections named `prefix`... other than those in `keep` (earlier physical collections of the
        same corpus)."""
        for name in self._call("list collections", "list_collections"):
            if name.startswith(prefix) and name not in keep:
                self._call("drop an old collection", "drop_collection", name)
                log.info("dropped Milvus collection %s (no revision reads it any more)", name)

    def point_alias(self, alias: str, exists: bool) -> None:
        """Make `alias` name this collection: moved in one step when it `exists` (an earlier revision made it),
        else created."""
        if exists:
            try:
                self._call("move the alias", "alter_alias", self.collection, alias)
                return
            except MilvusStoreError:  # a writer killed between its publish and this: the alias was never made
                pass
        self._call("create the alias", "create_alias", self.collection, alias)

    # ---- writing ---------------------------------------------------------------------------------------------
    def row(self, chunk: Chunk, vector: np.ndarray, terms: Sequence[str], gen: int) -> dict[str, Any]:
        """The row of `chunk` written by revision `gen` (ValueError naming the chunk when it does not fit)."""
        acl = [str(g) for g in chunk.meta.get("acl", ())]
        if len(acl) > MAX_GROUPS or any(len(g) > MAX_GROUP_CHARS for g in acl):
            raise ValueError(f"chunk {chunk.chunk_id}: acl must have at most {MAX_GROUPS} groups of at most "
                             f"{MAX_GROUP_CHARS} characters for Milvus; got {acl!r}")
        if len(chunk.chunk_id) > MAX_ID_CHARS or len(chunk.doc_id) > MAX_ID_CHARS:
            raise ValueError(f"chunk {chunk.chunk_id[:80]}...: chunk_id and doc_id must be at most {MAX_ID_CHARS} "
                             "characters for Milvus")
        body = json.dumps(chunk.to_dict(), ensure_ascii=False)
        if len(body.encode("utf-8")) > MAX_TEXT_BYTES:
            raise ValueError(f"chunk {chunk.chunk_id} of {chunk.doc_id}: its text and fields take more than "
                             f"{MAX_TEXT_BYTES} bytes, which a Milvus row cannot hold; lower KB_CHUNK_MAX_TOKENS")
        row = {"row_id": f"{chunk.chunk_id}#{gen}", "chunk_id": chunk.chunk_id, "doc_id": chunk.doc_id, "acl": acl,
               "public": not acl, "gen": int(gen), "died": LIVE, "chunk": body, "terms": _fitted(terms_text(terms)),
               "vector": np.asarray(vector, dtype=np.float32).tolist()}
        if self.has_grams():
            row["grams"] = _grams_text(chunk)
        return row

    def insert(self, rows: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(rows), WRITE_BATCH):
            self._call("write rows", "upsert", self.collection, list(rows[start:start + WRITE_BATCH]))

    def _query(self, expr: str, fields: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The rows matching `expr` (`fields`, else all but the computed BM25 vectors), at most QUERY_LIMIT of them.

        pymilvus's query iterator pages with an unescaped `pk > "last"` clause, which a chunk id holding a quote
        (it comes from a file path or URL) turns into another expression: rows are read by document batches
        instead (`_rows_of`), or by a query that drains itself (`sweep`)."""
        return list(self._call("read rows", "query", self.collection, filter=expr,
                               output_fields=list(fields or self._stored()),
                               limit=QUERY_LIMIT))

    def _rows_of(self, doc_ids: Sequence[str], expr: str,
                 fields: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """The rows of these documents that match `expr`, a batch of documents per query (halved when a batch
        holds more rows than one query returns)."""
        ids = list(dict.fromkeys(doc_ids))
        pending = [ids[i:i + ID_BATCH] for i in range(0, len(ids), ID_BATCH)]
        while pending:
            batch = pending.pop()
            rows = self._query(f"doc_id in {_list(batch)} and {expr}", fields)
            if len(rows) < QUERY_LIMIT:
                yield from rows
            elif len(batch) > 1:
                pending += [batch[:len(batch) // 2], batch[len(batch) // 2:]]
            else:
                raise MilvusStoreError(f"document {batch[0]} has more than {QUERY_LIMIT} chunks in Milvus; split it")

    def _remark(self, rows: Iterable[dict[str, Any]], died: int) -> int:
        """Write these rows again with `died` set (Milvus has no partial update)."""
        batch = [{**{k: v for k, v in row.items() if k not in ("sparse", "sparse_grams")}, "died": died}
                 for row in rows]
        self.insert(batch)
        return len(batch)

    def retire(self, doc_ids: Sequence[str], published: int, at: int) -> None:
        """Mark the rows of these documents alive at `published` as replaced by revision `at`."""
        self._remark(list(self._rows_of(doc_ids, visible(published))), at)

    def sweep(self, published: int) -> None:
        """Undo what a writer that never published left: its rows (`gen` after `published`) go and its marks on
        rows it meant to replace are lifted."""
        self._call("sweep an unpublished write", "delete", self.collection, filter=f"gen > {int(published)}")
        marked = f"died > {int(published)} and died < {LIVE}"
        while self._remark(self._query(marked), LIVE) == QUERY_LIMIT:  # a lifted mark no longer matches
            pass

    def purge(self, before: int) -> None:
        """Delete rows no reader at revision `before` or later can see."""
        self._call("purge replaced rows", "delete", self.collection, filter=f"died <= {int(before)}")

    def flush(self) -> None:
        self._call("flush", "flush", self.collection)

    def copy_from(self, source: MilvusCorpus, revision: int, doc_ids: Sequence[str], analyze) -> int:
        """Copy the rows of these documents alive at `revision` from `source`, their terms made again with
        `analyze` (text → terms) and their vectors kept; returns how many."""
        batch: list[dict[str, Any]] = []
        n = 0
        for row in source._rows_of(doc_ids, visible(revision)):
            for computed in ("sparse", "sparse_grams"):
                row.pop(computed, None)
            chunk = Chunk.from_dict(json.loads(row["chunk"]))
            row["terms"] = _fitted(terms_text(analyze(chunk.context_text())))
            if self.has_grams():
                row["grams"] = _grams_text(chunk)
            else:
                row.pop("grams", None)
            batch.append(row)
            if len(batch) >= WRITE_BATCH:
                self.insert(batch)
                n, batch = n + len(batch), []
        self.insert(batch)
        return n + len(batch)

    # ---- reading ---------------------------------------------------------------------------------------------
    def _hits(self, res: Any, bm25: bool) -> list[Row]:
        out = []
        for hit in res[0] if res else []:
            entity = hit["entity"]
            # Milvus Lite reports BM25 as a negative distance, servers as the (positive) score: BM25 is never
            # negative, so its magnitude is the score on both. Milvus keeps the (k1 + 1) factor that the Lucene
            # variant of bm25s drops: without it the scores are bm25s's, whichever store served them.
            score = abs(float(hit["distance"])) / (K1 + 1) if bm25 else float(hit["distance"])
            out.append(Row(Chunk.from_dict(json.loads(entity["chunk"])), score, int(entity["gen"])))
        return out

    def dense(self, vector: np.ndarray, k: int, revision: int, groups: Sequence[str] | None = None,
              docs: Collection[str] | None = None) -> list[Row]:
        """Up to k rows of `revision` nearest to `vector` (inner product), best first, among those `groups` may
        read of the documents `docs` (both inside the search)."""
        if k <= 0 or (docs is not None and not docs):
            return []
        k = min(k, MAX_TOP_K)
        params = {"HNSW": {"ef": max(128, 2 * k)}, "IVF_FLAT": {"nprobe": IVF_NPROBE},
                  "DISKANN": {"search_list": max(100, k)}}.get(self.index_type, {})
        vec = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()
        res = self._call("search", "search", self.collection, data=[vec], anns_field="vector", limit=k,
                         filter=visible(revision) + readable_by(groups, docs), output_fields=["chunk", "gen"],
                         search_params={"metric_type": "IP", "params": params})
        return self._hits(res, bm25=False)

    def lexical(self, terms: Sequence[str], k: int, revision: int, groups: Sequence[str] | None = None,
                docs: Collection[str] | None = None, grams: bool = False) -> list[Row]:
        """Up to k rows of `revision` by BM25 of these analyzer terms (of these bigrams with `grams`), best first,
        with the same restrictions."""
        if k <= 0 or not terms or (docs is not None and not docs) or (grams and not self.has_grams()):
            return []
        res = self._call("search", "search", self.collection, data=[terms_text(terms)],
                         anns_field="sparse_grams" if grams else "sparse",
                         limit=min(k, MAX_TOP_K), filter=visible(revision) + readable_by(groups, docs),
                         output_fields=["chunk", "gen"], search_params={"metric_type": "BM25"})
        return [r for r in self._hits(res, bm25=True) if r.score > 0]

    def get(self, chunk_ids: Sequence[str], revision: int) -> dict[str, tuple[Chunk, int]]:
        """The chunks of `revision` with these ids, with the revision that wrote each."""
        out: dict[str, tuple[Chunk, int]] = {}
        ids = list(dict.fromkeys(chunk_ids))
        for start in range(0, len(ids), ID_BATCH):
            rows = self._call("read rows", "query", self.collection,
                              filter=f"chunk_id in {_list(ids[start:start + ID_BATCH])} and {visible(revision)}",
                              output_fields=["chunk", "gen"])
            for row in rows:
                chunk = Chunk.from_dict(json.loads(row["chunk"]))
                out[chunk.chunk_id] = (chunk, int(row["gen"]))
        return out

    def chunks(self, revision: int, doc_ids: Sequence[str]) -> Iterator[tuple[Chunk, int]]:
        """Every chunk of these documents in `revision`, with the revision that wrote it."""
        for row in self._rows_of(doc_ids, visible(revision), ("chunk", "gen")):
            yield Chunk.from_dict(json.loads(row["chunk"])), int(row["gen"])

    def count(self, revision: int) -> int:
        res = self._call("count rows", "query", self.collection, filter=visible(revision),
                         output_fields=["count(*)"])
        return int(res[0]["count(*)"])


def check_name(collection: str) -> None:
    if not collection or not collection.replace("_", "a").isalnum() or collection[0].isdigit():
        raise ValueError(f"milvus collection must be letters, digits and _ and not start with a digit; got "
                         f"{collection!r} (set KB_MILVUS_COLLECTION)")


def _released(exc: Exception) -> bool:
    text = str(exc).lower()
    return "released" in text or "not loaded" in text or "load() before" in text


def _unreachable(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(w in text for w in ("unavailable", "connect", "deadline", "timeout", "timed out", "closed channel"))


@dataclass(frozen=True)
class MilvusConfig:
    """Where a corpus keeps its chunks in Milvus.

    `uri`: None puts a Milvus Lite file `milvus.db` inside the index folder (one process at a time); a
    `http://host:19530` URI reaches a Milvus standalone or cluster. `collection`: the corpus's name, an alias of the
    physical collection serving now. `index_type`: FLAT, HNSW, IVF_FLAT, DISKANN (standalone/cluster only) or
    AUTOINDEX. `token`: "user:password" or an API key, for servers with authentication.
    """

    uri: str | None = None
    collection: str = "kb_chunks"
    index_type: str = "HNSW"
    token: str | None = None

    def uri_for(self, index_root: Path) -> str:
        return str(Path(index_root) / "milvus.db") if self.uri is None else self.uri
