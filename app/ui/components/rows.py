"""One row per scored passage: what a card and the raw data table show, from a search or from the playground.

A search gives `rerank.types.Scored`s with their hits (a chunk with its source); the playground gives `Scored`s over
plain strings. Both become `Row`s so that the cards, the table and its CSV are written once. `id` is the input
order (1-based): the position in the recall list for a search, the line number among the candidates in the
playground, so a person can see how far reranking moved a passage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from app.services.results import SearchResult
from rerank.types import Scored


@dataclass(frozen=True)
class Row:
    id: int
    rank: int
    text: str
    score: float | None  # the reranker's normalised score (sigmoid of raw), None when recall-only
    raw_score: float | None
    band: str | None
    shown: bool  # above the threshold and within the top N
    retrieval_score: float | None = None
    leg: str | None = None
    title: str = ""
    section: str = ""
    page: int | None = None
    source: str = ""
    chunk_id: str = ""
    acl: tuple[str, ...] = ()  # the document's access groups (empty: everyone's)
    reranker: str | None = None  # the model that scored it (a canary, or the serving model)
    not_reranked: bool = False  # a reranker serves but did not score it (latency budget, or still reranking)


def _recall_order(results: Sequence[Scored]) -> dict[str, int]:
    """chunk_id -> position in the recall list. Recall returns hits by fused score, best first; its own order
    for equal scores is each leg's rank, which the hit carries."""
    inf = math.inf
    ordered = sorted(results, key=lambda r: (-r.hit.retrieval_score, r.hit.dense_rank or inf,
                                             r.hit.lexical_rank or inf, r.hit.chunk.chunk_id))
    return {r.hit.chunk.chunk_id: i for i, r in enumerate(ordered, start=1)}


def from_search(res: SearchResult) -> list[Row]:
    """Rows of every recalled chunk: the shown results, those above the threshold cut by N (or the per-document
    cap), then those under the threshold, each in rank order. `not_reranked` marks the rows a reranker did not
    score: beyond a latency budget, or all of a recall preview."""
    order = _recall_order(res.results + res.not_shown + res.below_threshold)
    rows = []
    for shown, group in ((True, res.results), (False, res.not_shown), (False, res.below_threshold)):
        for r in group:
            c = r.hit.chunk
            rows.append(Row(id=order[c.chunk_id], rank=r.rank, text=c.text, score=r.score, raw_score=r.raw_score,
                            band=r.band, shown=shown, retrieval_score=r.hit.retrieval_score, leg=r.hit.leg,
                            title=c.title, section=c.section, page=c.page, source=c.meta.get("source", ""),
                            chunk_id=c.chunk_id, acl=tuple(c.meta.get("acl", ())), reranker=res.reranker,
                            not_reranked=r.score is None and (res.reranker is not None or res.preview)))
    return rows


def from_scored(scored: Sequence[Scored], threshold: float, top_n: int, reranker: str | None = None) -> list[Row]:
    """Playground rows: every candidate in rank order; `shown` for the first `top_n` with score >= threshold;
    `reranker` the model that scored them."""
    rows, kept = [], 0
    for s in sorted(scored, key=lambda s: s.rank):
        shown = s.score >= threshold and kept < top_n
        kept += shown
        rows.append(Row(id=s.index + 1, rank=s.rank, text=s.text, score=s.score, raw_score=s.raw_score,
                        band=s.band, shown=shown, reranker=reranker))
    return rows


COLUMNS = ["ID", "Text", "Raw Score", "Normalized Score", "Band", "Rank", "Retrieval Score", "Leg", "Source",
           "Shown", "Reranker"]


def table(rows: Sequence[Row]) -> pd.DataFrame:
    """The raw data table, in input order (ID); the app lets a person sort it by any column."""
    data = [{"ID": r.id, "Text": r.text, "Raw Score": r.raw_score, "Normalized Score": r.score, "Band": r.band,
             "Rank": r.rank, "Retrieval Score": r.retrieval_score, "Leg": r.leg,
             "Source": " › ".join(x for x in (r.title, r.section) if x) or r.source, "Shown": r.shown,
             "Reranker": r.reranker}
            for r in sorted(rows, key=lambda r: r.id)]
    return pd.DataFrame(data, columns=COLUMNS)


def to_csv(rows: Sequence[Row]) -> bytes:
    """The table as CSV, UTF-8 with a byte-order mark so that spreadsheet programs read Chinese correctly."""
    return table(rows).to_csv(index=False).encode("utf-8-sig")
