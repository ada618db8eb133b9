"""Vector stores behind one protocol (`base.VectorStore`): FAISS embedded (`faiss`), Milvus for scale (`milvus`)."""

from .base import StoreFactory, VectorStore, allowed_by_groups
from .faiss import FaissStore, FaissStoreFactory

__all__ = ["FaissStore", "FaissStoreFactory", "StoreFactory", "VectorStore", "allowed_by_groups"]
