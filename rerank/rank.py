"""Turn reranker scores into ranked `Scored` results, and apply the threshold / top-N filter."""

from __future__ import annotations

from collections.abc import Sequence

from rerank.params import check_threshold, check_top_n
from rerank.protocol import Reranker
from rerank.text import prepare_texts
from rerank.types import Scored, band_of
from retrieval.types import Hit


def rerank(query: str, candidates: Sequence[Hit] | Sequence[str], reranker: Reranker) -> list[Scored]:
    """Score every candidate (hits from recall, or plain strings in the playground) and sort by score, best first.

    Ties keep input order. `rank` is 1-based; `index` is the candidate's input position; `text` is the cleaned
    text shown (a hit's chunk body; the reranker reads its context_text()); `hit` is the Hit (None for
    strings). The input is not modified.
    """
    hits: list[Hit | None] = []
    raw_texts: list[str] = []  # what the reranker reads: a chunk's context_text() (title, headings, body)
    shown: list[str] = []  # what a person sees: the body
    for i, c in enumerate(candidates):
        if isinstance(c, Hit):
            hits.append(c)
            raw_texts.append(c.chunk.context_text())
            shown.append(c.chunk.text)
        elif isinstance(c, str):
            hits.append(None)
            raw_texts.append(c)
            shown.append(c)
        else:
            raise TypeError(f"candidates[{i}] must be a Hit or a str; got {type(c).__name__}")
    if not raw_texts:
        return []
    texts = prepare_texts(raw_texts)
    shown = prepare_texts(shown)
    scores = reranker.score(query, texts)
    if len(scores) != len(texts):
        raise RuntimeError(f"reranker {reranker.name!r} returned {len(scores)} scores for {len(texts)} candidates")
    order = sorted(range(len(texts)), key=lambda i: (-scores[i][0], i))  # raw: sigmoid saturates
    return [Scored(index=i, text=shown[i], raw_score=float(scores[i][0]), score=float(scores[i][1]),
                   band=band_of(scores[i][1]), rank=r, hit=hits[i]) for r, i in enumerate(order, start=1)]


def filter_scored(scored: Sequence[Scored], threshold: float | None = None, top_n: int | None = None) -> list[Scored]:
    """Keep results with score >= threshold, then the first top_n. None means no limit (0.0 is a real threshold)."""
    if threshold is not None:
        threshold = check_threshold(threshold)
    if top_n is not None:
        top_n = check_top_n(top_n)
    ordered = sorted(scored, key=lambda s: s.rank)
    kept = [s for s in ordered if threshold is None or s.score >= threshold]
    return kept if top_n is None else kept[:top_n]
