"""Layer 2: embedders, the FAISS store, BM25, hybrid recall, and the device/dtype choice for any model."""
