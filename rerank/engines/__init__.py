"""Reranker engines behind the `rerank.protocol.Reranker` protocol: the encoder cross-encoder (`cross_encoder`,
on PyTorch or an ONNX export: `scorers`, `exported`), FlagEmbedding's LLM rerankers (`llm`), a TEI-compatible
server (`remote`); `precision` is the reduced-precision policy; `factory` picks one for a name; `pool` holds the
loaded ones."""

from .factory import create_reranker, is_disabled
from .pool import ModelPool

__all__ = ["ModelPool", "create_reranker", "is_disabled"]
