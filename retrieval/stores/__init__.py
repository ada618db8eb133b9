"""Vector stores behind one protocol (`base.VectorStore`): FAISS embedded (`faiss`), Milvus for scale (`milvus`).

Only the protocol is imported here: the access rule (`base.allowed_by_groups`) is read by code that must not load
FAISS (metadata filters, which the command line checks before any heavy import); import a backend's module by name.
"""

from .base import StoreFactory, VectorStore, allowed_by_groups

__all__ = ["StoreFactory", "VectorStore", "allowed_by_groups"]
