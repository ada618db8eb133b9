"""Layer 3: cross-encoder reranking, score normalisation, long-passage windows, threshold/top-N, model registry.

Heavy modules (torch, sentence-transformers) load only when an engine loads; importing `rerank` is cheap.
"""
