"""Recall: the top K chunks for a query from the dense leg, the lexical leg, or both fused.

Access groups and metadata filters are applied inside each leg's scoring, so a restricted caller gets a full K of
chunks they may see (and that match the filters) and no count of the others; each leg's hits are then checked
again against the version's own records (`dense_hits`, `lexical_hits`), so a store that answers with a chunk it
should have filtered out (a tampered Milvus row) returns nothing the caller may not read. Synonyms widen
the lexical leg only: the dense leg already places 年假 near 年休假 when its model can read them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ingest.types import Chunk

from .embedder import Embedder
from .filters import Filters
from .fusion import rrf
from .index import KnowledgeIndex
from .synonyms import Expansion
from .types import Hit, Mode, check_mode, check_top_k

if TYPE_CHECKING:
    from .shared import SharedIndex


@dataclass(frozen=True)
class RecallResult:
    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)  # embed, dense, lexical, fuse
    mode: str = "hybrid"  # the mode actually used
    note: str | None = None  # why it differs from the one asked for
    also: list[str] = field(default_factory=list)  # synonyms the lexical leg searched besides the query's words


def recall(index: KnowledgeIndex | SharedIndex, embedder: Embedder, query: str, top_k: int = 50, mode: Mode = "hybrid",
           groups: Sequence[str] | None = None, dense_weight: float = 1.0, lexical_weight: float = 1.0,
           rrf_k: int = 60, depth: int | None = None, filters: Filters | None = None,
           synonyms: Sequence[Expansion] = ()) -> RecallResult:
    """Up to `top_k` hits, best first, among the chunks `groups` may read of the documents that meet `filters`
    (FilterError for an unknown key). Each leg retrieves `depth` (default max(top_k, 100)) before fusion;
    `synonyms` are the query's expansions (`Synonyms.expansions`), which the lexical leg scores as one term each."""
    check_mode(mode)
    check_top_k(top_k)
    depth = max(top_k, 100) if depth is None else depth
    docs = index.matching_documents(filters, groups)
    if docs is not None and not docs:
        return RecallResult(hits=[], timings_ms=dict.fromkeys(("embed", "dense", "lexical", "fuse"), 0.0), mode=mode,
                            note="no document you may read matches the filters")
    note = None
    if mode in ("hybrid", "dense"):
        unreadable = embedder.coverage(query)
        if unreadable.unreadable() and mode == "hybrid":
            # A model that cannot read the query's language ranks close to randomly (CMRC2018 nDCG@10 with an
            # English model: 0.16 dense vs 0.98 BM25); fusing it in would only push good lexical hits down.
            mode, note = "lexical", (f"embedder {embedder.name} cannot read this query's "
                                     f"{unreadable.describe()}: served by BM25 alone")
        elif unreadable.unreadable():  # dense asked for by name (e.g. to measure the leg): served, and said
            note = (f"embedder {embedder.name} cannot read this query's {unreadable.describe()}: these dense "
                    "results are close to random; use hybrid or lexical")
    timings: dict[str, float] = {"embed": 0.0, "dense": 0.0, "lexical": 0.0, "fuse": 0.0}
    dense: list[tuple[Chunk, float]] = []
    lexical: list[tuple[Chunk, float]] = []
    # Each leg filters inside its search and checks every hit again against the published version's records
    # (`dense_hits`, `lexical_hits`): a store is a separate service (Milvus) whose rows anyone who reaches it could
    # rewrite. A hit the caller may not read is dropped before ranking, so it moves no other hit either.
    if mode in ("hybrid", "dense"):
        t0 = time.perf_counter()
        qvec = embedder.embed_queries([query])
        t1 = time.perf_counter()
        dense = index.dense_hits(qvec, depth if mode == "hybrid" else top_k, groups, docs)
        timings["embed"], timings["dense"] = (t1 - t0) * 1000, (time.perf_counter() - t1) * 1000
    if mode in ("hybrid", "lexical"):
        t0 = time.perf_counter()
        lexical = index.lexical_hits(query, depth if mode == "hybrid" else top_k, groups, docs, synonyms)
        timings["lexical"] = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    chunks = {c.chunk_id: c for c, _ in (*dense, *lexical)}
    d_rank = {c.chunk_id: r for r, (c, _) in enumerate(dense, start=1)}
    l_rank = {c.chunk_id: r for r, (c, _) in enumerate(lexical, start=1)}
    if mode == "hybrid":
        ranked = rrf([[c.chunk_id for c, _ in dense], [c.chunk_id for c, _ in lexical]],
                     [dense_weight, lexical_weight], rrf_k)
    else:
        ranked = [(c.chunk_id, s) for c, s in (dense if mode == "dense" else lexical)]
    hits = []
    for cid, score in ranked[:top_k]:
        in_d, in_l = cid in d_rank, cid in l_rank
        leg = "both" if in_d and in_l else ("dense" if in_d else "lexical")
        hits.append(Hit(chunk=chunks[cid], retrieval_score=float(score), leg=leg,
                        dense_rank=d_rank.get(cid), lexical_rank=l_rank.get(cid)))
    timings["fuse"] = (time.perf_counter() - t0) * 1000
    used = list(dict.fromkeys(t for e in synonyms for t in e.also)) if mode != "dense" else []
    return RecallResult(hits=hits, timings_ms=timings, mode=mode, note=note, also=used)
