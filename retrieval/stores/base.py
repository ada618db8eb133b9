"""The `VectorStore` protocol (chunks' vectors with their access groups) and the `StoreFactory` an index uses to
make a new store or reopen the one a saved version points at.

Implementations: `retrieval.stores.faiss` (embedded, inside each index version: the default) and
`retrieval.stores.milvus` (one Milvus collection shared by all versions). `KnowledgeIndex` only sees these
protocols; which one serves is decided once, by the composition root, from the settings.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from ingest.types import Chunk


def allowed_by_groups(acl: Sequence[str], groups: Sequence[str] | None) -> bool:
    """A chunk with no acl is public; otherwise the caller needs one of its groups. `groups=None` means no
    restriction (an administrator or the command line)."""
    return groups is None or not acl or bool(set(acl) & set(groups))


class VectorStore(Protocol):
    """Chunks' vectors with their access groups. `search` applies the group filter (and a set of allowed
    documents, from metadata filters) inside the search, so each caller gets its top k among the chunks it may
    see."""

    @property
    def kind(self) -> str: ...  # for the manifest and stats: "flat", "hnsw", "milvus-hnsw", ...
    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None: ...
    def delete(self, doc_ids: Sequence[str]) -> int: ...
    def search(self, vectors: np.ndarray, k: int, groups: Sequence[str] | None = None,
               docs: Collection[str] | None = None) -> list[list[tuple[str, float]]]: ...
    def count(self) -> int: ...
    def save(self, folder: Path) -> None: ...


class StoreFactory(Protocol):
    """Makes and reopens the `VectorStore` of one index folder (`root`); `folder` is a saved version's `dense/`."""

    name: str  # "faiss" | "milvus": recorded in the manifest

    def create(self, dim: int, root: Path) -> VectorStore:
        """An empty store for a new index at `root`."""
        ...

    def load(self, folder: Path, root: Path) -> VectorStore:
        """The store a saved version reads."""
        ...

    def mismatch(self, folder: Path, root: Path) -> str | None:
        """Why the version saved at `folder` cannot be read by this factory (built into another store), with
        the setting that fixes it; None when it can."""
        ...
