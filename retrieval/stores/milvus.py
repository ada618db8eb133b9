"""`MilvusStore`: the `VectorStore` protocol on Milvus (pymilvus), for knowledge bases that outgrow one process.

The same URI scheme as pymilvus: a path ending in `.db` is an embedded Milvus Lite file (one process, tests and
laptops); `http://host:19530` is a Milvus standalone or cluster (the `scale` docker-compose profile).

One collection per index. A row is a chunk::

    chunk_id  VARCHAR primary key      doc_id  VARCHAR (deletes go by document)
    acl       ARRAY<VARCHAR>           public  BOOL (acl is empty: everyone may see it)
    gen       INT64 (the index version that wrote the row)     vector  FLOAT_VECTOR, inner product

Access groups are a filtered field, not partitions: a chunk may belong to several groups and public chunks to
all of them, so a partition (or partition key) per group would store such vectors many times over, and a group
added later would mean re-partitioning. `public or array_contains_any(acl, [...])` is a boolean expression that
Milvus turns into a bitset applied INSIDE the vector search (HNSW skips the excluded rows while it walks the
graph), so a caller always gets its top k among the chunks it may see, never a top k cut down after the fact.

Versions. The rest of an index (chunk table, BM25) lives in versioned folders that are published atomically
(`retrieval.storage`); Milvus is one live copy shared by all versions. Each row carries the generation `gen` of the
index version that wrote it, and a store opened on published version G searches `gen <= G` (inside the same
filter), so a reader never spends its top-k slots on chunks of an ingest that is not yet published. Deletes
cannot be held back that way: a reader still on version G loses the dense hits of documents that a running ingest
changes or deletes (BM25 still finds them) until it loads the next version. A writer that dies before publishing
leaves rows with `gen > G`; the next writer removes them before its first write. See docs/SCALING.md.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ingest.types import Chunk

from .base import VectorStore

log = logging.getLogger(__name__)

INDEX_TYPES = ("FLAT", "HNSW", "IVF_FLAT", "DISKANN", "AUTOINDEX")
HNSW_M = 32  # as the FAISS store
HNSW_EF_CONSTRUCTION = 200
IVF_NLIST, IVF_NPROBE = 1024, 32
MAX_TOP_K = 16_384  # Milvus's own limit on k
MAX_GROUPS, MAX_GROUP_CHARS, MAX_ID_CHARS = 64, 256, 4096
WRITE_BATCH = 1000  # rows per upsert (a gRPC message stays far below Milvus's 64 MiB limit at 1024-d)
DELETE_BATCH = 1000  # document ids per delete expression
FILE = "milvus.json"  # what a version folder records about the store


_CLIENTS: dict[tuple[str, str], Any] = {}  # one client per server and credentials, shared by every store
_CLIENTS_LOCK = threading.Lock()


class MilvusStoreError(RuntimeError):
    """Milvus cannot be reached or the collection does not fit this index. The message says how to fix it."""

    kind = "not_ready"  # app.errors maps it to an HTTP status and an exit code


def _literal(value: str) -> str:
    """A Milvus expression string literal (double-quoted, backslash and quote escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _list(values: Iterable[str]) -> str:
    return "[" + ", ".join(_literal(v) for v in values) + "]"


def is_lite(uri: str) -> bool:
    """pymilvus's own rule: a URI ending in .db is a Milvus Lite file."""
    return uri.endswith(".db")


class MilvusStore:
    """`VectorStore` on one Milvus collection. Cheap `__init__`: nothing connects before the first call."""

    def __init__(self, dim: int, uri: str, collection: str = "kb_chunks", index_type: str = "HNSW",
                 token: str | None = None, generation: int = 0):
        if index_type not in INDEX_TYPES:
            raise ValueError(f"milvus index_type must be one of {', '.join(INDEX_TYPES)}; got {index_type!r} "
                             "(set KB_MILVUS_INDEX)")
        if not collection or not collection.replace("_", "a").isalnum() or collection[0].isdigit():
            raise ValueError(f"milvus collection must be letters, digits and _ and not start with a digit; got "
                             f"{collection!r} (set KB_MILVUS_COLLECTION)")
        self.dim = dim
        self.uri = str(uri)
        self.collection = collection
        self.index_type = index_type
        self.token = token
        self.generation = generation  # the published version this store reads; writes go to generation + 1
        self._client: Any = None
        self._lock = threading.Lock()
        self._wrote = False  # this store wrote rows of generation + 1 (it is the writer) and sees them
        self._swept = False  # debris of an unpublished writer removed (once, before the first write)

    @property
    def kind(self) -> str:
        return f"milvus-{self.index_type.lower()}"

    # ---- connection ----------------------------------------------------------------------------------------
    def _conn(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> Any:
        try:
            from pymilvus import MilvusClient
        except ImportError as exc:
            raise MilvusStoreError("vector_store = milvus needs pymilvus and milvus-lite: "
                                   "pip install 'kb-search[milvus]'") from exc
        from pymilvus.exceptions import MilvusException

        if is_lite(self.uri):
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
        key = (self.uri, self.token or "")
        try:
            with _CLIENTS_LOCK:  # a reader reloading its index for every new version must not open a channel each time
                if key not in _CLIENTS:
                    _CLIENTS[key] = MilvusClient(uri=self.uri, token=self.token or "")
                client = _CLIENTS[key]
        except MilvusException as exc:
            hint = (f"Milvus Lite serves one process: is another `kb serve` or `kb ingest` holding {self.uri}? "
                    "For several processes use a Milvus standalone URI (KB_MILVUS_URI=http://host:19530)"
                    if is_lite(self.uri) else "check KB_MILVUS_URI and that the server is up")
            raise MilvusStoreError(f"cannot open Milvus at {self.uri}: {exc.message}. {hint}") from exc
        if client.has_collection(self.collection):
            self._check_collection(client)
            client.load_collection(self.collection)
        else:
            self._create_collection(client)
        return client

    def _create_collection(self, client: Any) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                            description="kb-search chunks")
        schema.add_field("chunk_id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_CHARS)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=MAX_ID_CHARS)
        schema.add_field("acl", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=MAX_GROUPS,
                         max_length=MAX_GROUP_CHARS)
        schema.add_field("public", DataType.BOOL)
        schema.add_field("gen", DataType.INT64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        from pymilvus import MilvusException

        def index_params(scalars: tuple[str, ...]):
            params = client.prepare_index_params()
            build = {"HNSW": {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION},
                     "IVF_FLAT": {"nlist": IVF_NLIST}}.get(self.index_type, {})
            params.add_index("vector", index_type=self.index_type, metric_type="IP", params=build)
            for name in scalars:
                params.add_index(name, index_type="INVERTED")
            return params

        # the terms of every filter and delete; Lite scans scalars anyway (and has no index on ARRAY fields)
        scalars = () if is_lite(self.uri) else ("doc_id", "public", "gen", "acl")
        # Strong: a search sees every write acknowledged before it (an ingest's own checks, and readers right
        # after a publish). Bounded staleness would be cheaper on a busy cluster but could miss a new version.
        try:
            client.create_collection(self.collection, schema=schema, index_params=index_params(scalars),
                                     consistency_level="Strong")
        except MilvusException as exc:
            if "acl" not in scalars or "scalar index" not in str(exc):
                raise
            # a server without scalar indexes on ARRAY fields (Milvus Lite's server): the group filter scans
            log.warning("Milvus at %s refused an index on the acl field (%s); the group filter will scan it",
                        self.uri, exc)
            client.drop_collection(self.collection)
            client.create_collection(self.collection, schema=schema,
                                     index_params=index_params(tuple(n for n in scalars if n != "acl")),
                                     consistency_level="Strong")

    def _check_collection(self, client: Any) -> None:
        desc = client.describe_collection(self.collection)
        fields = {f["name"]: f for f in desc["fields"]}
        missing = {"chunk_id", "doc_id", "acl", "public", "gen", "vector"} - set(fields)
        if missing:
            raise MilvusStoreError(f"Milvus collection {self.collection!r} at {self.uri} was not made by kb-search "
                                   f"(no field {', '.join(sorted(missing))}); set KB_MILVUS_COLLECTION to another "
                                   "name")
        dim = int(fields["vector"]["params"]["dim"])
        if dim != self.dim:
            raise MilvusStoreError(f"Milvus collection {self.collection!r} at {self.uri} holds {dim}-d vectors but "
                                   f"the embedder gives {self.dim}-d; set KB_MILVUS_COLLECTION to another name or "
                                   "drop that collection")

    def close(self) -> None:
        """Forget this store's connection (the shared client stays open for other stores of the process)."""
        with self._lock:
            self._client = None

    # ---- mutation ------------------------------------------------------------------------------------------
    def _sweep(self, client: Any) -> None:
        """Before this writer's first write: drop rows a writer that died before publishing left behind."""
        if not self._swept:
            client.delete(self.collection, filter=f"gen > {self.generation}")
            self._swept = True

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Add chunks; chunks whose id is already stored are replaced."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(chunks), self.dim):
            raise ValueError(f"vectors must have shape ({len(chunks)}, {self.dim}); got {vectors.shape}")
        rows = [self._row(c, v) for c, v in zip(chunks, vectors)]
        if not rows:
            return
        client = self._conn()
        self._sweep(client)
        for start in range(0, len(rows), WRITE_BATCH):
            client.upsert(self.collection, rows[start:start + WRITE_BATCH])
        self._wrote = True

    def _row(self, chunk: Chunk, vector: np.ndarray) -> dict[str, Any]:
        acl = [str(g) for g in chunk.meta.get("acl", ())]
        if len(acl) > MAX_GROUPS or any(len(g) > MAX_GROUP_CHARS for g in acl):
            raise ValueError(f"chunk {chunk.chunk_id}: acl must have at most {MAX_GROUPS} groups of at most "
                             f"{MAX_GROUP_CHARS} characters for Milvus; got {acl!r}")
        if len(chunk.chunk_id) > MAX_ID_CHARS or len(chunk.doc_id) > MAX_ID_CHARS:
            raise ValueError(f"chunk {chunk.chunk_id[:80]}...: chunk_id and doc_id must be at most {MAX_ID_CHARS} "
                             "characters for Milvus")
        return {"chunk_id": chunk.chunk_id, "doc_id": chunk.doc_id, "acl": acl, "public": not acl,
                "gen": self.generation + 1, "vector": vector.tolist()}

    def delete(self, doc_ids: Sequence[str]) -> int:
        """Remove every chunk of these documents; returns how many visible chunks went."""
        ids = list(dict.fromkeys(doc_ids))
        if not ids:
            return 0
        client = self._conn()
        self._sweep(client)
        removed = 0
        for start in range(0, len(ids), DELETE_BATCH):
            expr = f"doc_id in {_list(ids[start:start + DELETE_BATCH])}"
            removed += self._count(client, f"{expr} and {self._visible()}")
            client.delete(self.collection, filter=expr)
        self._wrote = True
        return removed

    # ---- reading -------------------------------------------------------------------------------------------
    def _visible(self) -> str:
        return f"gen <= {self.generation + 1 if self._wrote else self.generation}"

    def _count(self, client: Any, expr: str) -> int:
        res = client.query(self.collection, filter=expr, output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    def count(self) -> int:
        return self._count(self._conn(), self._visible())

    def _search_params(self, k: int) -> dict[str, Any]:
        params = {"HNSW": {"ef": max(128, 2 * k)}, "IVF_FLAT": {"nprobe": IVF_NPROBE},
                  "DISKANN": {"search_list": max(100, k)}}.get(self.index_type, {})
        return {"metric_type": "IP", "params": params}

    def search(self, vectors: np.ndarray, k: int, groups: Sequence[str] | None = None,
               docs: Collection[str] | None = None) -> list[list[tuple[str, float]]]:
        """For each query vector, up to k (chunk_id, inner product) pairs, best first, restricted to `groups`
        (None: no restriction; []: public chunks only) and to the documents `docs` (None: any), both inside the
        search. k is capped at Milvus's limit of 16384."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if k <= 0 or len(vectors) == 0 or (docs is not None and not docs):
            return [[] for _ in range(len(vectors))]
        expr = self._visible()
        if groups is not None:
            wanted = sorted({str(g) for g in groups})
            expr += f" and (public or array_contains_any(acl, {_list(wanted)}))" if wanted else " and public"
        if docs is not None:
            expr += f" and doc_id in {_list(sorted(docs))}"
        k = min(k, MAX_TOP_K)
        res = self._conn().search(self.collection, data=vectors.tolist(), limit=k, filter=expr,
                                  output_fields=["chunk_id"], search_params=self._search_params(k))
        return [[(hit["entity"]["chunk_id"], float(hit["distance"])) for hit in row] for row in res]

    # ---- persistence ---------------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Make the rows durable in Milvus and record, in a version folder, which collection and generation the
        version reads. From now on this store reads (and writes above) that generation."""
        client = self._conn()
        client.flush(self.collection)
        generation = self.generation + 1
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"collection": self.collection, "dim": self.dim, "index_type": self.index_type,
                "generation": generation}
        (folder / FILE).write_text(json.dumps(meta), encoding="utf-8")
        self.generation, self._wrote = generation, False

    @staticmethod
    def read_meta(folder: Path) -> dict[str, Any] | None:
        """What a version folder says about its Milvus store, or None when its vectors are in FAISS."""
        path = folder / FILE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    @classmethod
    def load(cls, folder: Path, uri: str, token: str | None = None) -> MilvusStore:
        """The store of a saved version, reading that version's generation from `uri`."""
        meta = cls.read_meta(folder)
        if meta is None:
            raise MilvusStoreError(f"{folder} holds no {FILE}: that version keeps its vectors in FAISS")
        return cls(meta["dim"], uri, meta["collection"], meta["index_type"], token, meta["generation"])


@dataclass(frozen=True)
class MilvusConfig:
    """Where an index keeps its vectors in Milvus.

    `uri`: None puts a Milvus Lite file `milvus.db` inside the index folder (one process at a time); a
    `http://host:19530` URI reaches a Milvus standalone or cluster. `collection`: one per index.
    `index_type`: FLAT, HNSW, IVF_FLAT, DISKANN (standalone/cluster only) or AUTOINDEX. `token`: "user:password"
    or an API key, for servers with authentication.
    """

    uri: str | None = None
    collection: str = "kb_chunks"
    index_type: str = "HNSW"
    token: str | None = None

    def uri_for(self, index_root: Path) -> str:
        return str(Path(index_root) / "milvus.db") if self.uri is None else self.uri


class MilvusStoreFactory:
    """`StoreFactory` for Milvus: every version of the index reads one collection (see the module docstring)."""

    name = "milvus"

    def __init__(self, config: MilvusConfig):
        self.config = config

    def create(self, dim: int, root: Path) -> VectorStore:
        c = self.config
        return MilvusStore(dim, c.uri_for(root), c.collection, c.index_type, c.token)

    def load(self, folder: Path, root: Path) -> VectorStore:
        return MilvusStore.load(folder, self.config.uri_for(root), self.config.token)

    def mismatch(self, folder: Path, root: Path) -> str | None:
        built = MilvusStore.read_meta(folder)
        if built is None:
            return (f"index {root} keeps its vectors in FAISS but vector_store is 'milvus'; set "
                    "KB_VECTOR_STORE=faiss to use it as it is")
        if built["collection"] != self.config.collection:
            return (f"index {root} keeps its vectors in Milvus collection {built['collection']!r} but "
                    f"KB_MILVUS_COLLECTION is {self.config.collection!r}; set it to {built['collection']!r}")
        return None
