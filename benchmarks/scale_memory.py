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

`--replica`: a serving replica's memory and Milvus Lite's latency and ingest rate (issue 28), instead of the above.

- For each size (`--sizes`, default 200 and 20,000 chunks; synthetic chunks of 60 words of a mixed Chinese/English
  HR vocabulary as `app.quality.bench.synthetic_index`, 20 per document, 10% in group `hr`, random unit vectors
  `--dim` 384) the corpus is written both ways, by the writer's path (`opener.writing` / `new` /
  `replace_documents` / `save`; rows/s includes the client-side BM25 analysis): FAISS mode (an index folder) and
  Milvus mode (a SharedIndex on a `milvus-lite server` that the script starts on a free loopback port and stops
  at the end, SQLite catalog).
- A fresh process (spawned) then opens it as `kb serve` does (`app.components.open_index` with the settings of that
  mode; no models: a stand-in embedder gives the name and dimension) and runs one lexical and one dense search so
  that everything lazy (FAISS, the bm25s matrix) is loaded: its resident memory (VmRSS) at a baseline (libraries
  of both modes imported, jieba's dictionary loaded), after the open and after the searches; "corpus" is the
  growth from the baseline to the end. The milvus-lite server's
  own RSS is reported beside it (where the corpus lives in that mode).
- At the largest size, on the Milvus Lite corpus and the FAISS one: p50/p95 ms of the lexical leg
  (`lexical_hits`, k=100 as recall's hybrid depth) and of the dense leg (`dense_hits`, k=100, the query vectors
  embedded beforehand), over `--queries` synthetic queries, and of hybrid `retrieval.recall.recall` (top 50) with
  the packaged all-MiniLM-L6-v2 on the English queries (MiniLM cannot read Chinese: hybrid would fall back to BM25).

Milvus Lite filters rows in Python, so its latencies are not a Milvus server's.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/scale_memory.py --replica --sizes 200 20000
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import sys
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
        lex.set_bigrams(list(table.values()))  # the bigram field, as the loader makes it from the chunk table
        bigram_bytes = tracemalloc.get_traced_memory()[0] - interned_bytes
        tracemalloc.stop()
    assert plain == lex.tokens
    bm25 = lex.words.bm25()
    matrix = sum(a.nbytes for a in bm25.scores.values() if isinstance(a, np.ndarray))
    grams = lex.bigrams.bm25()
    gram_matrix = sum(a.nbytes for a in grams.scores.values() if isinstance(a, np.ndarray)) if grams else 0
    terms = sum(len(t) for t in lex.tokens)
    return {"corpus": name, "chunks": n, "chars_per_chunk": round(sum(len(c.context_text()) for c in chunks) / n),
            "terms_per_chunk": round(terms / n), "nonzeros_per_chunk": round(int(bm25.scores["data"].size) / n),
            "chunk_table_bytes_per_chunk": round(table_bytes / n), "bm25_tokens_bytes_per_chunk":
            round(tokens_bytes / n), "bm25_tokens_interned_bytes_per_chunk": round(interned_bytes / n),
            "bm25_matrix_bytes_per_chunk": round(matrix / n),
            "bigrams_per_chunk": round(sum(len(t) for t in lex.bigrams.tokens) / n),
            "bigram_tokens_bytes_per_chunk": round(bigram_bytes / n),
            "bigram_matrix_bytes_per_chunk": round(gram_matrix / n), "table_size": len(table)}


# ---- --replica: a serving replica's memory, FAISS mode vs Milvus mode; latency and ingest on Milvus Lite -------------
class StandIn:
    """What `open_index` needs of an embedder (its name and dimension), without loading a model: the packaged
    all-MiniLM-L6-v2's name (the latency figures search with that model), the vectors are random."""

    def __init__(self, dim: int):
        self.dim = dim

    def info(self) -> dict:
        from retrieval.models import PACKAGED_MINILM, resolve_model

        return {"name": resolve_model(PACKAGED_MINILM).name, "dim": self.dim, "path": None}


def synthetic_docs(n: int, dim: int, per_doc: int = 20, words: int = 60, seed: int = 0):
    """`n` chunks in documents of `per_doc` as `app.quality.bench.synthetic_index` makes them (every 10th document
    in group `hr`), with random unit vectors."""
    from app.quality.bench import _WORDS
    from ingest.types import Document

    rng = np.random.default_rng(seed)
    docs = []
    for d in range(-(-n // per_doc)):
        acl = ["hr"] if d % 10 == 0 else []
        doc = Document(doc_id=f"/data/kb/policies/doc-{d:06d}.md", source=f"/data/kb/policies/doc-{d:06d}.md",
                       title=f"Policy {d}", text="", meta={"content_hash": f"{d:064x}", "format": "md", "acl": acl,
                                                           "fields": {"department": "hr" if acl else "it"}})
        chunks = [Chunk(chunk_id=f"{doc.doc_id}#{i:04d}", doc_id=doc.doc_id, text=" ".join(rng.choice(_WORDS, words)),
                        title=doc.title, meta={"acl": acl, "position": i})
                  for i in range(min(per_doc, n - d * per_doc))]
        docs.append((doc, chunks))
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return docs, vecs


def replica_settings(store: str, root: Path, uri: str | None, collection: str, milvus_index: str) -> dict:
    """The settings (as keyword arguments of `app.settings.Settings`) of a replica of that mode."""
    out = {"index_dir": str(root / "index"), "database_url": f"sqlite:///{root / 'kb.db'}", "vector_store": store}
    if store == "milvus":
        out.update(milvus_uri=uri, milvus_collection=collection, milvus_index=milvus_index)
    return out


def write_corpus(settings: dict, n: int, dim: int, per_doc: int) -> dict:
    """Write the synthetic corpus through the writer's path of that mode; rows/s of the whole write."""
    from app.components import index_opener
    from app.settings import Settings

    s = Settings(**settings)
    docs, vecs = synthetic_docs(n, dim, per_doc)
    opener = index_opener(s)
    root = Path(s.index_dir)
    t0 = time.perf_counter()
    with opener.writing(root):
        index = opener.new(root, StandIn(dim).info(), {})
        index.replace_documents(docs, vecs)
        index.save()
    took = time.perf_counter() - t0
    return {"documents": len(docs), "write_s": round(took, 2), "rows_per_s": round(n / took, 1)}


def replica(settings: dict, dim: int) -> dict:
    """In a fresh process: open the corpus as `kb serve` does and search it once by each leg; VmRSS at each step."""
    import bm25s  # noqa: F401 — the fixed costs of either mode, paid before the baseline: libraries, jieba's
    import faiss  # noqa: F401 — dictionary (loaded at a process's first Chinese text), a gRPC channel
    import pymilvus  # noqa: F401

    import app.components as components
    from app.settings import Settings
    from retrieval.analyzer import DEFAULT

    DEFAULT.analyze("年假 annual leave")
    gc.collect()
    imports = rss_bytes()
    s = Settings(**settings)
    t0 = time.perf_counter()
    index = components.open_index(s, StandIn(dim))
    open_s = time.perf_counter() - t0
    gc.collect()
    opened = rss_bytes()
    vec = np.ones((1, dim), dtype=np.float32) / np.sqrt(dim)
    assert index.lexical_hits("annual leave 年假", 10) and len(index.dense_hits(vec, 10)) == 10
    gc.collect()
    searched = rss_bytes()
    return {"documents": len(index.documents), "chunks": len(index.chunks), "open_s": round(open_s, 2),
            "rss_baseline_mb": round(imports / 1e6, 1), "rss_after_open_mb": round(opened / 1e6, 1),
            "rss_after_search_mb": round(searched / 1e6, 1), "corpus_mb": round((searched - imports) / 1e6, 1)}


def server_rss_mb(pid: int) -> float:
    """VmRSS of the milvus-lite server and its children (MB)."""
    total, children = 0, Path(f"/proc/{pid}/task/{pid}/children")
    for p in [pid] + ([int(c) for c in children.read_text().split()] if children.exists() else []):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return round(total / 1e6, 1)


def queries(n: int, seed: int = 1) -> list[str]:
    """Synthetic queries from the chunks' vocabulary: English ones of 3 words, Chinese ones of 2, alternating."""
    from app.quality.bench import _WORDS

    english = [w for w in _WORDS if w.isascii()]
    chinese = [w for w in _WORDS if not w.isascii()]
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(english, 3)) if i % 2 == 0 else "".join(rng.choice(chinese, 2)) for i in range(n)]


def latency(settings: dict, n_queries: int, settle: float) -> dict:
    """p50/p95 ms of each leg and of hybrid recall, on the corpus of these settings (run in a fresh process), each
    call `settle` seconds after the one before: milvus-lite server, on the same 2 cores, keeps working briefly after
    it answers, and a query embedded in that moment has torch's threads fighting it (measured: MiniLM 24 ms alone,
    180 ms right after a Milvus Lite search, 43 ms 0.5 s after), which a server on its own machine would not do."""
    from app.components import open_index
    from app.quality.latency import percentiles
    from app.settings import Settings
    from retrieval.embedder import Embedder
    from retrieval.models import PACKAGED_MINILM
    from retrieval.recall import recall

    emb = Embedder(PACKAGED_MINILM, device="cpu").load()
    index = open_index(Settings(**settings), emb)
    qs = queries(n_queries)
    vecs = emb.embed_queries(qs)
    for i in range(2):  # warm up: an English and a Chinese query
        index.lexical_hits(qs[i], 100), index.dense_hits(vecs[i:i + 1], 100), recall(index, emb, qs[i], 50)
    legs: dict[str, list[float]] = {"lexical": [], "dense": [], "hybrid_recall": [], "hybrid_embed": [],
                                    "hybrid_dense": [], "hybrid_lexical": []}
    for i, q in enumerate(qs):
        time.sleep(settle)
        t0 = time.perf_counter()
        index.lexical_hits(q, 100)
        legs["lexical"].append((time.perf_counter() - t0) * 1000)
        time.sleep(settle)
        t0 = time.perf_counter()
        index.dense_hits(vecs[i:i + 1], 100)
        legs["dense"].append((time.perf_counter() - t0) * 1000)
        if q.isascii():
            time.sleep(settle)
            t0 = time.perf_counter()
            res = recall(index, emb, q, 50, "hybrid")
            legs["hybrid_recall"].append((time.perf_counter() - t0) * 1000)
            assert res.mode == "hybrid", res.note
            for stage in ("embed", "dense", "lexical"):
                legs[f"hybrid_{stage}"].append(res.timings_ms[stage])
    return {k: {q: v for q, v in percentiles(x).items() if q in ("p50", "p95", "n")} for k, x in legs.items()}


def in_fresh_process(fn, *args):
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def replica_figures(sizes: list[int], dim: int, per_doc: int, milvus_index: str, n_queries: int,
                    settle: float) -> dict:
    import os

    from milvus_parity import machine, milvus_lite_server

    out: dict = {"machine": machine(), "dim": dim, "chunks_per_document": per_doc, "milvus_index": milvus_index,
                 "settle_s": settle, "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp, milvus_lite_server(Path(tmp)) as (uri, server):
        out["milvus_server_rss_empty_mb"] = server_rss_mb(server.pid)
        for n in sizes:
            row = out["sizes"][str(n)] = {}
            for store in ("faiss", "milvus"):
                root = Path(tmp) / f"{store}-{n}"
                root.mkdir()
                settings = replica_settings(store, root, uri, f"replica_{n}", milvus_index)
                print(f"{n} chunks, {store}: writing", file=sys.stderr, flush=True)
                row[store] = {"write": in_fresh_process(write_corpus, settings, n, dim, per_doc)}
                row[store]["replica"] = in_fresh_process(replica, settings, dim)
                if store == "milvus":
                    row[store]["milvus_server_rss_mb"] = server_rss_mb(server.pid)
                if n == max(sizes) and n_queries:
                    print(f"{n} chunks, {store}: latency", file=sys.stderr, flush=True)
                    row[store]["latency_ms"] = in_fresh_process(latency, settings, n_queries, settle)
        out["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="vectors per flat measurement")
    ap.add_argument("--n-hnsw", type=int, default=10_000, help="vectors per HNSW measurement (slow to build)")
    ap.add_argument("--dims", type=int, nargs="+", default=[384, 1024])
    ap.add_argument("--data", type=Path, default=Path("../shared/eval-data"), help="folder with scifact/, cmrc2018/")
    ap.add_argument("--text-only", action="store_true", help="only the chunk table and BM25 rows")
    ap.add_argument("--replica", action="store_true", help="a replica's RSS, FAISS vs Milvus mode; Milvus Lite "
                    "latency and ingest rows/s (see the module docstring)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 20_000], help="--replica: corpus sizes (chunks)")
    ap.add_argument("--dim", type=int, default=384, help="--replica: vector dimension")
    ap.add_argument("--per-doc", type=int, default=20, help="--replica: chunks per document")
    ap.add_argument("--milvus-index", default="FLAT", help="--replica: KB_MILVUS_INDEX of the Milvus corpus")
    ap.add_argument("--queries", type=int, default=60, help="--replica: queries for the latency figures "
                    "(0: none)")
    ap.add_argument("--settle", type=float, default=0.5, help="--replica: seconds between timed calls (see latency)")
    args = ap.parse_args()
    if args.replica:
        print(json.dumps(replica_figures(args.sizes, args.dim, args.per_doc, args.milvus_index, args.queries,
                                         args.settle)))
        return
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
