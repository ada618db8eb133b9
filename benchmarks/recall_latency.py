"""Recall latency (embed + dense + BM25 + fusion) at growing corpus sizes, CPU, with the packaged MiniLM.

Chunks are synthetic (random words from a real English+Chinese vocabulary) with random unit vectors: the cost of
FAISS and BM25 depends on sizes, not on meaning. Run: `python benchmarks/recall_latency.py --sizes 10000 100000`.
Prints one JSON object; figures go to docs/RETRIEVAL.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ingest.types import Chunk  # noqa: E402
from retrieval.embedder import Embedder  # noqa: E402
from retrieval.index import KnowledgeIndex  # noqa: E402
from retrieval.models import PACKAGED_MINILM  # noqa: E402
from retrieval.recall import recall  # noqa: E402
from retrieval.stores.faiss import FaissStoreFactory  # noqa: E402

WORDS = ("leave annual sick parental probation resignation notice payroll salary expense receipt travel hotel "
         "laptop software request vpn token password reset security incident report onboarding remote office "
         "年假 病假 试用期 离职 手续 工资 报销 发票 差旅 电脑 软件 密码 "
         "令牌 安全 事件 入职 远程 办公 审批 主管").split()
QUERIES = ["how do I reset my VPN token", "试用期员工离职需要办理哪些手续", "expense receipt for hotel travel",
           "年假怎么申请", "laptop software request approval", "report a security incident"]


def build(n: int, dim: int, root: Path, emb_info: dict, ann_threshold: int) -> KnowledgeIndex:
    rng = np.random.default_rng(0)
    index = KnowledgeIndex(root, emb_info, {}, FaissStoreFactory(ann_threshold))
    chunks = [Chunk(chunk_id=f"c{i}", doc_id=f"d{i // 20}", text=" ".join(rng.choice(WORDS, 60)),
                    meta={"acl": ["hr"] if i % 10 == 0 else [], "position": i % 20}) for i in range(n)]
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index.dense.upsert(chunks, vecs)
    index.chunks = {c.chunk_id: c for c in chunks}
    index.lexical.set_chunks(chunks)
    return index


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--ann-threshold", type=int, default=50_000)
    args = parser.parse_args()
    emb = Embedder(PACKAGED_MINILM).load()
    out = {"embedder": emb.name, "cpu_threads": os.cpu_count(), "sizes": {}}
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            index = build(n, emb.dim, Path(tmp), emb.info(), args.ann_threshold)
            recall(index, emb, "warm up", 50, "hybrid")  # builds FAISS and BM25
            build_s = time.perf_counter() - t0
            row = {"dense_index": index.dense.kind, "build_s": round(build_s, 1)}
            for mode, groups in (("hybrid", None), ("dense", None), ("lexical", None), ("hybrid", ["it"])):
                totals, stages = [], {"embed": [], "dense": [], "lexical": [], "fuse": []}
                for r in range(args.repeats):
                    t = time.perf_counter()
                    res = recall(index, emb, QUERIES[r % len(QUERIES)], 50, mode, groups)
                    totals.append((time.perf_counter() - t) * 1000)
                    for k, v in res.timings_ms.items():
                        stages[k].append(v)
                totals.sort()
                key = mode + ("+groups" if groups else "")
                row[key] = {"p50_ms": round(statistics.median(totals), 2),
                            "p95_ms": round(totals[int(0.95 * (len(totals) - 1))], 2),
                            "stages_p50_ms": {k: round(statistics.median(v), 2) for k, v in stages.items()}}
            out["sizes"][n] = row
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
