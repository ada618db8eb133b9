"""Reranker engines behind the `rerank.protocol.Reranker` protocol: the encoder cross-encoder (`cross_encoder`,
on PyTorch or an ONNX export: `scorers`, `exported`), FlagEmbedding's LLM rerankers (`llm`), a TEI-compatible
server (`remote`); `precision` is the reduced-precision policy; `factory` picks one for a name."""

from .factory import clear_shared, create_reranker, get_reranker, is_disabled

__all__ = ["clear_shared", "create_reranker", "get_reranker", "is_disabled"]
