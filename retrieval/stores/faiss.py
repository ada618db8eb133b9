"""`FaissStore`: the embedded default `VectorStore`, on FAISS (inner product over unit vectors = cosine), with ids
and access-group filtering.

Rows are chunks; FAISS ids are row numbers. Vectors are kept beside the FAISS index so that deletes and index
type changes are a rebuild from exact data, never an approximation of an approximation. Flat (exact) search up to
`ann_threshold` vectors, HNSW above it. A filtered search over a small allowed set is exact on that subset, so
access filtering never loses results to graph pruning.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection, Sequence
from pathlib import Path

import faiss
import numpy as np

from ingest.types import Chunk

from .base import VectorStore, allowed_by_groups

log = logging.getLogger(__name__)

HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
EXACT_SUBSET_MAX = 50_000


class FaissStore:
    """The embedded default `VectorStore`."""

    def __init__(self, dim: int, ann_threshold: int = 50_000):
        self.dim = dim
        self.ann_threshold = ann_threshold
        self.chunk_ids: list[str] = []
        self.doc_ids: list[str] = []
        self.acls: list[tuple[str, ...]] = []
        self.vectors = np.zeros((0, dim), dtype=np.float32)
        self._index: faiss.Index | None = None
        self._index_kind = ""
        self._allowed: dict[tuple[str, ...], np.ndarray] = {}  # rows each group set may see, until a change
        self._gpu_index: faiss.Index | None = None  # a GPU copy of a flat index, when faiss-gpu and a GPU exist
        self._indexed_rows = 0  # rows already in self._index (appends can be added incrementally)

    # ---- mutation ------------------------------------------------------------------------------------------
    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Add chunks; chunks whose id is already stored are replaced."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(chunks), self.dim):
            raise ValueError(f"vectors must have shape ({len(chunks)}, {self.dim}); got {vectors.shape}")
        new_ids = {c.chunk_id for c in chunks}
        if new_ids & set(self.chunk_ids):
            self._drop(lambda i: self.chunk_ids[i] in new_ids)
        self.chunk_ids += [c.chunk_id for c in chunks]
        self.doc_ids += [c.doc_id for c in chunks]
        self.acls += [tuple(c.meta.get("acl", ())) for c in chunks]
        self.vectors = np.vstack([self.vectors, vectors]) if len(self.vectors) else vectors
        self._allowed.clear()

    def delete(self, doc_ids: Sequence[str]) -> int:
        """Remove every chunk of these documents; returns how many chunks went."""
        gone = set(doc_ids)
        return self._drop(lambda i: self.doc_ids[i] in gone)

    def _drop(self, predicate) -> int:
        keep = [i for i in range(len(self.chunk_ids)) if not predicate(i)]
        removed = len(self.chunk_ids) - len(keep)
        if removed:
            self.chunk_ids = [self.chunk_ids[i] for i in keep]
            self.doc_ids = [self.doc_ids[i] for i in keep]
            self.acls = [self.acls[i] for i in keep]
            self.vectors = self.vectors[keep]
            self._index, self._indexed_rows = None, 0  # row numbers moved: rebuild
            self._allowed.clear()
        return removed

    def _gpu_copy(self, index: faiss.Index) -> faiss.Index | None:
        """faiss-gpu (the `gpu` extra) with a visible GPU: search flat indexes there. None otherwise."""
        if self.kind != "flat" or not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
            return None
        if self._gpu_index is None or self._gpu_index.ntotal != index.ntotal:
            try:
                self._gpu_res = getattr(self, "_gpu_res", None) or faiss.StandardGpuResources()
                self._gpu_index = faiss.index_cpu_to_gpu(self._gpu_res, 0, index)
            except RuntimeError as exc:  # an index type or memory the GPU cannot take: stay on the CPU
                log.warning("FAISS stays on the CPU: %s", exc)
                return None
        return self._gpu_index

    # ---- index ---------------------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return "hnsw" if len(self.chunk_ids) > self.ann_threshold else "flat"

    def _new_index(self) -> faiss.Index:
        if self.kind == "hnsw":
            base = faiss.IndexHNSWFlat(self.dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        else:
            base = faiss.IndexFlatIP(self.dim)
        return faiss.IndexIDMap2(base)

    def _ensure_index(self) -> faiss.Index:
        n = len(self.chunk_ids)
        if self._index is not None and self._index_kind != self.kind:
            self._index, self._indexed_rows = None, 0
        if self._index is None:
            self._index, self._index_kind = self._new_index(), self.kind
        if self._indexed_rows < n:
            rows = np.arange(self._indexed_rows, n, dtype=np.int64)
            self._index.add_with_ids(self.vectors[self._indexed_rows:n], rows)
            self._indexed_rows = n
        return self._index

    def count(self) -> int:
        return len(self.chunk_ids)

    # ---- search --------------------------------------------------------------------------------------------
    def search(self, vectors: np.ndarray, k: int, groups: Sequence[str] | None = None,
               docs: Collection[str] | None = None) -> list[list[tuple[str, float]]]:
        """For each query vector, up to k (chunk_id, cosine) pairs, best first, restricted to `groups` and to the
        documents `docs` (None: any)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        n = self.count()
        if n == 0 or k <= 0:
            return [[] for _ in range(len(vectors))]
        allowed = None
        if groups is not None:
            key = tuple(sorted(set(groups)))
            allowed = self._allowed.get(key)
            if allowed is None:
                allowed = np.array([i for i, acl in enumerate(self.acls) if allowed_by_groups(acl, groups)],
                                   dtype=np.int64)
                self._allowed[key] = allowed
        if docs is not None:
            wanted = docs if isinstance(docs, set | frozenset) else set(docs)
            rows = np.fromiter((i for i, d in enumerate(self.doc_ids) if d in wanted), dtype=np.int64)
            allowed = rows if allowed is None else np.intersect1d(allowed, rows, assume_unique=True)
        if allowed is not None and len(allowed) == 0:
            return [[] for _ in range(len(vectors))]
        if allowed is not None and (len(allowed) <= EXACT_SUBSET_MAX or self.kind == "flat"):
            sims = vectors @ self.vectors[allowed].T  # exact on the allowed subset
            top = min(k, len(allowed))
            part = np.argpartition(-sims, top - 1, axis=1)[:, :top]
            out = []
            for q in range(len(vectors)):
                order = part[q][np.argsort(-sims[q, part[q]])]
                out.append([(self.chunk_ids[allowed[j]], float(sims[q, j])) for j in order])
            return out
        index = self._ensure_index()
        gpu = self._gpu_copy(index) if allowed is None else None
        if gpu is not None:
            scores, ids = gpu.search(vectors, min(k, n))
            return [[(self.chunk_ids[i], float(s)) for s, i in zip(srow, irow) if i >= 0]
                    for srow, irow in zip(scores, ids)]
        params = None
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(128, 2 * k))
            if allowed is not None:
                params.sel = faiss.IDSelectorBatch(allowed)
        scores, ids = index.search(vectors, min(k, n), params=params)
        return [[(self.chunk_ids[i], float(s)) for s, i in zip(srow, irow) if i >= 0]
                for srow, irow in zip(scores, ids)]

    # ---- persistence ---------------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "vectors.npy", self.vectors)
        meta = {"dim": self.dim, "ann_threshold": self.ann_threshold, "kind": self.kind,
                "chunk_ids": self.chunk_ids, "doc_ids": self.doc_ids, "acls": [list(a) for a in self.acls]}
        (folder / "store.json").write_text(json.dumps(meta), encoding="utf-8")
        faiss.write_index(self._ensure_index(), str(folder / "dense.faiss"))
        for name in ("vectors.npy", "store.json", "dense.faiss"):
            with open(folder / name, "rb") as fh:
                os.fsync(fh.fileno())

    @classmethod
    def load(cls, folder: Path, ann_threshold: int | None = None) -> FaissStore:
        meta = json.loads((folder / "store.json").read_text(encoding="utf-8"))
        store = cls(meta["dim"], meta["ann_threshold"] if ann_threshold is None else ann_threshold)
        store.chunk_ids, store.doc_ids = meta["chunk_ids"], meta["doc_ids"]
        store.acls = [tuple(a) for a in meta["acls"]]
        store.vectors = np.load(folder / "vectors.npy")
        index = faiss.read_index(str(folder / "dense.faiss"))
        if index.ntotal == store.count() and meta["kind"] == store.kind:
            store._index, store._index_kind, store._indexed_rows = index, meta["kind"], store.count()
        return store


class FaissStoreFactory:
    """`StoreFactory` for FAISS: each index version keeps its vectors in its own `dense/` folder."""

    name = "faiss"

    def __init__(self, ann_threshold: int = 50_000):
        self.ann_threshold = ann_threshold

    def create(self, dim: int, root: Path) -> VectorStore:
        return FaissStore(dim, self.ann_threshold)

    def load(self, folder: Path, root: Path) -> VectorStore:
        return FaissStore.load(folder, self.ann_threshold)

    def mismatch(self, folder: Path, root: Path) -> str | None:
        if (folder / "milvus.json").is_file():  # a version written when Milvus held only the vectors
            return (f"index {root} was built by an older kb-search that kept its vectors in Milvus; rebuild it "
                    f"with `kb ingest PATH --index {root} --rebuild` (FAISS), or with KB_VECTOR_STORE=milvus to "
                    "keep the whole corpus in Milvus")
        return None
