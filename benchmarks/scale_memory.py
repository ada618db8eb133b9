"""Memory per chunk of what one index holds in a serving process, measured, for docs/SCALING.md.

- Dense: the embedded `FaissStore` (flat and HNSW M=32) with random unit vectors: the FAISS index by its
  serialised size (its arrays: vectors, ids, HNSW links), the copy of the vectors the store keeps beside it, and
  the resident-memory growth of a fresh process as a cross-check (FAISS allocates outside Python; the id map's
  hash table and the Python id lists are only in that one).
- Chunk table and BM25: real text, chunked one passage per chunk as `kb eval` does (SciFact abstracts in English,
  CMRC2018 paragraphs in Chinese), loaded the way `KnowledgeIndex.open` loads them (JSON lines), measured with
  tracemalloc; the bm25s score matrix by its array sizes.

Run: `python benchmarks/scale_memory.py --n 20000 --data ../shared/eval-data` (Linux: reads /proc/self/status).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from ingest.types import Chunk
from retrieval.analyzer import analyze
from retrieval.lexical import LexicalIndex
from retrieval.stores.faiss import FaissStore


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def dense(n: int, dim: int, kind: str) -> dict:
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    chunks = [Chunk(chunk_id=f"c{i}", doc_id=f"d{i // 10}", text="", meta={"acl": []}) for i in range(n)]
    gc.collect()
    before = rss_bytes()
    store = FaissStore(dim, ann_threshold=0 if kind == "hnsw" else n + 1)
    store.upsert(chunks, vecs.copy())
    t0 = time.perf_counter()
    store.search(vecs[:1], 10)  # builds the index
    build_s = time.perf_counter() - t0
    grown = rss_bytes() - before
    assert store.kind == kind
    import faiss

    index_bytes = len(faiss.serialize_index(store._index))
    return {"kind": kind, "dim": dim, "n": n, "raw_vector_bytes": 4 * dim,
            "faiss_index_bytes_per_chunk": round(index_bytes / n),
            "vector_copy_bytes_per_chunk": round(store.vectors.nbytes / n),
            "rss_growth_bytes_per_chunk": round(grown / n), "build_s": round(build_s, 1)}


def passages(path: Path, limit: int) -> list[Chunk]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i >= limit:
                break
            row = json.loads(line)
            doc_id = f"/data/eval/{path.parent.name}/{row['_id']}"
            out.append(Chunk(chunk_id=f"{doc_id}#0000-{i:08x}", doc_id=doc_id, text=row["text"],
                             title=row.get("title", ""), section="", n_tokens=0,
                             meta={"acl": [], "position": 0, "source": doc_id}))
    return out


def table_and_bm25(name: str, chunks: list[Chunk]) -> dict:
    n = len(chunks)
    lines = [json.dumps(c.to_dict(), ensure_ascii=False) for c in chunks]
    token_lines = [json.dumps([c.chunk_id, analyze(c.context_text())], ensure_ascii=False) for c in chunks]
    gc.collect()
    tracemalloc.start()
    table = {c.chunk_id: c for c in (Chunk.from_dict(json.loads(x)) for x in lines)}  # as KnowledgeIndex.open
    table_bytes = tracemalloc.get_traced_memory()[0]
    plain = [json.loads(line)[1] for line in token_lines]  # as LexicalIndex.load did before interning
    tokens_bytes = tracemalloc.get_traced_memory()[0] - table_bytes
    tracemalloc.stop()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "tokens.jsonl").write_text("\n".join(token_lines) + "\n", encoding="utf-8")
        gc.collect()
        tracemalloc.start()
        lex = LexicalIndex.load(Path(tmp))  # the real loader: one string per distinct term
        interned_bytes = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    assert plain == lex.tokens
    bm25 = lex._ensure()
    matrix = sum(a.nbytes for a in bm25.scores.values() if isinstance(a, np.ndarray))
    terms = sum(len(t) for t in lex.tokens)
    return {"corpus": name, "chunks": n, "chars_per_chunk": round(sum(len(c.context_text()) for c in chunks) / n),
            "terms_per_chunk": round(terms / n), "nonzeros_per_chunk": round(int(bm25.scores["data"].size) / n),
            "chunk_table_bytes_per_chunk": round(table_bytes / n), "bm25_tokens_bytes_per_chunk":
            round(tokens_bytes / n), "bm25_tokens_interned_bytes_per_chunk": round(interned_bytes / n),
            "bm25_matrix_bytes_per_chunk": round(matrix / n), "table_size": len(table)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="vectors per flat measurement")
    ap.add_argument("--n-hnsw", type=int, default=10_000, help="vectors per HNSW measurement (slow to build)")
    ap.add_argument("--dims", type=int, nargs="+", default=[384, 1024])
    ap.add_argument("--data", type=Path, default=Path("../shared/eval-data"), help="folder with scifact/, cmrc2018/")
    ap.add_argument("--text-only", action="store_true", help="only the chunk table and BM25 rows")
    args = ap.parse_args()
    jobs = [] if args.text_only else [(args.n if k == "flat" else args.n_hnsw, d, k) for d in args.dims
                                      for k in ("flat", "hnsw")]
    out: dict = {"dense": [], "text": []}
    for job in jobs:
        with multiprocessing.get_context("spawn").Pool(1) as pool:  # a fresh process per measurement
            out["dense"].append(pool.apply(dense, job))
    for name in ("scifact", "cmrc2018"):
        corpus = args.data / name / "corpus.jsonl"
        if corpus.is_file():
            out["text"].append(table_and_bm25(name, passages(corpus, 5000)))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
