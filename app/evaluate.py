"""Evaluation on BEIR-layout datasets (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) with ranx metrics.

Documents are chunked like any ingest; a document's score for a query is the best score of its chunks (MaxP).
The built index is cached under `index_root/eval-<dataset>-<fingerprint>` and reused while corpus, embedder and
chunker settings are unchanged.
"""

from __future__ import annotations

import csv
import hashlib
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ingest import Document, chunk
from retrieval.embedder import Embedder
from retrieval.index import KnowledgeIndex
from retrieval.recall import recall
from retrieval.storage import writer_lock

METRICS = ["ndcg@10", "mrr@10", "recall@10", "recall@50", "recall@100"]


@dataclass(frozen=True)
class BeirData:
    name: str
    corpus: dict[str, tuple[str, str]]  # id -> (title, text)
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_beir(folder: Path, split: str = "test") -> BeirData:
    """Read a BEIR folder. Raises FileNotFoundError/ValueError naming the missing file or bad line."""
    folder = Path(folder)
    for name in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} is missing; a BEIR folder needs corpus.jsonl, queries.jsonl "
                                    f"and qrels/{split}.tsv (pick another split with --split)")
    corpus = {}
    with open(folder / "corpus.jsonl", encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            try:
                row = json.loads(line)
                corpus[str(row["_id"])] = (row.get("title") or "", row["text"])
            except (ValueError, KeyError) as exc:
                raise ValueError(f"{folder / 'corpus.jsonl'} line {n}: needs _id and text ({exc})") from exc
    qrels: dict[str, dict[str, int]] = {}
    with open(folder / "qrels" / f"{split}.tsv", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader, None)  # header
        for row in reader:
            if len(row) >= 3 and int(row[2]) > 0:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    queries = {}
    with open(folder / "queries.jsonl", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if str(row["_id"]) in qrels:
                queries[str(row["_id"])] = row["text"]
    return BeirData(folder.name, corpus, queries, qrels)


def build_index(data: BeirData, embedder: Embedder, index_root: Path, max_tokens: int, overlap: int,
                progress: bool = False) -> KnowledgeIndex:
    max_tokens = min(max_tokens, embedder.max_seq_length)
    chunker = {"max_tokens": max_tokens, "overlap": overlap, "counter": embedder.name}
    h = hashlib.sha256(json.dumps([sorted(data.corpus.items()), embedder.name, chunker]).encode()).hexdigest()[:10]
    root = Path(index_root) / f"eval-{data.name}-{h}"
    if KnowledgeIndex.read_manifest(root) is not None:
        return KnowledgeIndex.open(root, embedder.info(), chunker)
    index = KnowledgeIndex(root, embedder.info(), chunker)
    docs, all_chunks = [], []
    for doc_id, (title, text) in data.corpus.items():
        doc = Document(doc_id=doc_id, source=f"beir:{data.name}/{doc_id}", title=title, text=text,
                       meta={"content_hash": doc_id, "format": "beir", "acl": []})
        chunks = chunk(doc, embedder.count_tokens, max_tokens, overlap)
        docs.append((doc, chunks))
        all_chunks += chunks
    vectors = embedder.embed_passages([c.context_text() for c in all_chunks], show_progress=progress)
    index.replace_documents(docs, vectors)
    with writer_lock(root):
        index.save()
    return index


def doc_run(hits_scores: list[tuple[str, float]]) -> dict[str, float]:
    """MaxP: a document's score is its best chunk's score."""
    run: dict[str, float] = {}
    for doc_id, score in hits_scores:
        if doc_id not in run or score > run[doc_id]:
            run[doc_id] = score
    return run


def score_run(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]],
              metrics: list[str] | None = None) -> dict[str, float]:
    from ranx import Qrels, Run, evaluate

    run = {q: (r if r else {"__none__": 0.0}) for q, r in run.items()}  # ranx needs a doc per query
    result = evaluate(Qrels(qrels), Run(run), metrics or METRICS, make_comparable=True)
    return {k: round(float(v), 4) for k, v in result.items()}


def evaluate_recall(data: BeirData, index: KnowledgeIndex, embedder: Embedder, mode: str, top_k: int = 100,
                    reranker=None, rerank_k: int = 100,
                    tick: Callable[[int, int], None] | None = None) -> dict[str, dict]:
    """Metrics for recall alone and, with a reranker, for recall + rerank of the top `rerank_k` chunks."""
    runs: dict[str, dict[str, dict[str, float]]] = {"recall": {}}
    latency: dict[str, list[float]] = {"recall": []}
    if reranker is not None:
        from rerank.rank import rerank

        runs["rerank"], latency["rerank"] = {}, []
    for n, (qid, text) in enumerate(data.queries.items(), start=1):
        t0 = time.perf_counter()
        res = recall(index, embedder, text, top_k, mode)
        latency["recall"].append((time.perf_counter() - t0) * 1000)
        runs["recall"][qid] = doc_run([(h.chunk.doc_id, h.retrieval_score) for h in res.hits])
        if reranker is not None:
            t1 = time.perf_counter()
            scored = rerank(text, res.hits[:rerank_k], reranker)
            latency["rerank"].append((time.perf_counter() - t1) * 1000)
            runs["rerank"][qid] = doc_run([(s.hit.chunk.doc_id, s.raw_score) for s in scored])
        if tick:
            tick(n, len(data.queries))
    out = {}
    for stage, run in runs.items():
        lat = sorted(latency[stage])
        out[stage] = {"metrics": score_run(data.qrels, run),
                      "latency_ms": {"p50": round(statistics.median(lat), 2),
                                     "p95": round(lat[int(0.95 * (len(lat) - 1))], 2)}}
    return out
