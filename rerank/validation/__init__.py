"""Checks of reranker models: folder check, golden sets, the promotion gate, parity, agreement, ONNX export."""
