"""People's judgments as labels: `kb feedback export` writes them, `kb eval --judgments` scores the current index on
them and `kb tune --judgments` fits calibration and the threshold on them.

A judgments file holds one JSON object a line, oldest first: `query`, `groups` (the asker's, null: every
document), `chunk_id` (null: "none of these answers"), `doc_id`, `useful`, and `text` (the chunk's text when
exported). A query's useful chunks are its relevant ones (a chunk judged more than once counts as its latest
judgment says); chunks judged not useful, and everything else, count as not relevant; a query with no useful
chunk and a "none of these answers" is unanswerable.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.index import KnowledgeIndex
from retrieval.types import Hit

from ..identity import OPERATOR, Caller
from ..services.request import SearchRequest
from .evaluate import ranked_run, score_run
from .tune import Candidate, Collected, QueryScores, sigmoid

METRICS = ["hit@1", "hit@3", "hit@5", "mrr@10"]


@dataclass
class JudgedQuery:
    query: str
    groups: tuple[str, ...] | None
    chunks: dict[str, bool] = field(default_factory=dict)  # chunk id → useful (its latest judgment)
    none_answers: bool = False

    @property
    def useful(self) -> set[str]:
        return {c for c, u in self.chunks.items() if u}

    @property
    def qid(self) -> str:
        return f"{self.query}\x1f{','.join(self.groups) if self.groups is not None else '*'}"

    @property
    def answerable(self) -> bool:
        return bool(self.useful)

    @property
    def caller(self) -> Caller:
        return OPERATOR if self.groups is None else Caller.member_of(self.groups, who="judged query")


def export_rows(judgments: Iterable[dict[str, Any]], index: KnowledgeIndex | None) -> Iterable[dict[str, Any]]:
    """The lines of an export: each judgment with its chunk's text from `index` ("" when no longer indexed)."""
    judgments = list(judgments)
    # one batched read: with a corpus in Milvus each lookup is a query
    known = index.fetch([j["chunk_id"] for j in judgments if j["chunk_id"]]) if index is not None else {}
    for j in judgments:
        chunk = known.get(j["chunk_id"]) if j["chunk_id"] else None
        yield {"query": j["query"], "groups": j["groups"], "chunk_id": j["chunk_id"], "doc_id": j["doc_id"],
               "useful": j["useful"], "text": chunk.text if chunk is not None else "", "comment": j["comment"],
               "query_id": j["query_id"]}


def load_judgments(path: Path) -> list[JudgedQuery]:
    """The judged queries of a judgments file. ValueError naming the file and line for a bad one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--judgments {path}: no such file; write one with `kb feedback export FILE`")
    by_key: dict[tuple, JudgedQuery] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            query, useful, chunk_id = row["query"], row["useful"], row.get("chunk_id")
            groups = row.get("groups")
            if not isinstance(query, str) or not query.strip() or not isinstance(useful, bool):
                raise ValueError("query must be a non-empty string and useful true or false")
            if groups is not None and not (isinstance(groups, list) and all(isinstance(g, str) for g in groups)):
                raise ValueError("groups must be a list of group names or null")
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{n}: not a judgment ({exc}); each line is an object with query, useful and "
                             "chunk_id, as `kb feedback export` writes") from None
        key = (query.strip(), None if groups is None else tuple(sorted(set(groups))))
        q = by_key.setdefault(key, JudgedQuery(key[0], key[1]))
        if chunk_id is None:
            q.none_answers = q.none_answers or not useful
        else:
            q.chunks[chunk_id] = useful
    if not by_key:
        raise ValueError(f"{path} holds no judgments; export some with `kb feedback export FILE`")
    return list(by_key.values())


def evaluate_judgments(service, judged: list[JudgedQuery], top_k: int, threshold: float, top_n: int) -> dict:
    """hit@1/3/5 and MRR@10 of the current index and reranker over the useful chunks (each query searched as its
    asker), and what the served threshold and N would show: answerable queries left empty, unanswerable ones that
    still show an answer. The searches are not recorded as people's (the events store holds what people asked)."""
    service = service.unrecorded()
    qrels, run = {}, {}
    answers = {"answerable": 0, "answerable_empty": 0, "unanswerable": 0, "unanswerable_shown": 0,
               "threshold": threshold, "top_n": top_n}
    for q in judged:
        res = service.search(SearchRequest.of(q.query, top_k=top_k, top_n=min(top_k, 100), threshold=0.0,
                                              max_per_doc=top_k, merge=False, rerank_budget_ms=0),  # all scored
                             q.caller)
        ranked = res.results + res.not_shown + res.below_threshold
        shown = [r for r in ranked if r.score is None or r.score >= threshold][:top_n]
        if q.answerable:
            qrels[q.qid] = {c: 1 for c in q.useful}
            run[q.qid] = ranked_run([r.hit.chunk.chunk_id for r in ranked])
            answers["answerable"] += 1
            answers["answerable_empty"] += not shown
        elif q.none_answers:
            answers["unanswerable"] += 1
            answers["unanswerable_shown"] += bool(shown)
    metrics = score_run(qrels, run, METRICS) if qrels else dict.fromkeys(METRICS)
    return {"queries": len(judged), "answerable": len(qrels), "metrics": metrics, "answers": answers}


def collect_judgments(reranker, index: KnowledgeIndex, judged: list[JudgedQuery], name: str) -> tuple[Collected, int]:
    """Every judged chunk still in `index`, scored by `reranker` against its query (as served: the chunk's
    context text), as the `Collected` that calibration and threshold choice take; and how many judged chunks are
    no longer indexed."""
    from rerank.rank import rerank

    queries, missing = [], 0
    known = index.fetch(sorted({cid for q in judged for cid in q.chunks}))  # one batched read (Milvus: queries)
    for q in judged:
        ids = sorted(q.chunks)
        hits = []
        for cid in ids:
            chunk = known.get(cid)
            if chunk is None:
                missing += 1
                continue
            hits.append(Hit(chunk, 0.0, "lexical"))
        if not hits:
            continue
        scored = rerank(q.query, hits, reranker)
        cands = [Candidate(s.hit.chunk.chunk_id, s.hit.chunk.chunk_id, s.rank, float(s.raw_score),
                           float(sigmoid(np.asarray([s.raw_score]))[0]), int(s.hit.chunk.chunk_id in q.useful))
                 for s in scored]
        queries.append(QueryScores(q.qid, q.answerable, {c: 1 for c in q.useful}, cands, {}))
    return Collected(name, reranker.name, "", 0, queries), missing
