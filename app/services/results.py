"""What a search gives back: `SearchResult` (the results shown, the rest, timings, what served it, the best bets
pinned above them) and its JSON shape (`to_dict`, `result_dict`: the API's and `kb search --json`'s, DESIGN's CLI
contract), and what a caller may see of recall scores (`as_seen_by`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from rerank.types import Scored
from retrieval.types import Hit

if TYPE_CHECKING:
    from ingest.types import Chunk


def result_dict(r: Scored, reranker: str | None = None) -> dict[str, Any]:
    """One search result as the API and `kb search --json` give it (DESIGN's CLI contract); `reranker`: the model
    that scored it (None: recall-only). `retrieval_score` is what `as_seen_by` left the caller."""
    c = r.hit.chunk
    return {"rank": r.rank, "chunk_id": c.chunk_id, "doc_id": c.doc_id, "source": c.meta.get("source", ""),
            "title": c.title, "section": c.section, "page": c.page, "text": c.text,
            "retrieval_score": r.hit.retrieval_score, "leg": r.hit.leg,
            "raw_score": r.raw_score, "score": r.score, "band": r.band, "reranker": reranker,
            "reranked": r.score is not None}


def as_seen_by(hits: list[Hit], groups: Sequence[str] | None) -> list[Hit]:
    """The recall list as a caller restricted to `groups` may see it (None: unrestricted, every hit as it is).

    BM25's term statistics (document frequency, average length) cover every chunk of the index; the caller's groups
    only choose which chunks are scored. A raw score therefore moves with text the caller may not read (the same
    public chunk scores differently when an hr document contains the query's word), so a restricted caller gets
    each hit's `retrieval_score` as 1 / its position in the recall list: the order, which it needs, and nothing
    more. The same for every mode, so a client never has to know which leg's number it was given."""
    if groups is None:
        return hits
    return [replace(h, retrieval_score=1.0 / position) for position, h in enumerate(hits, start=1)]


@dataclass(frozen=True)
class Pinned:
    """A best bet's passage shown above the results (`app.services.bestbets`): no score, a label instead."""

    bet_id: str
    label: str  # e.g. "recommended by HR"
    match: str  # how the question called for it: exact, contains or synonyms
    chunk: Chunk

    def to_dict(self) -> dict[str, Any]:
        c = self.chunk
        return {"bet_id": self.bet_id, "label": self.label, "match": self.match, "chunk_id": c.chunk_id,
                "doc_id": c.doc_id, "source": c.meta.get("source", ""), "title": c.title, "section": c.section,
                "page": c.page, "text": c.text}


def with_pins(result: SearchResult, pins: list[Pinned]) -> SearchResult:
    """`result` with `pins` above it; a pinned passage is taken out of the results (and of the hidden and cut
    lists) so that it is not shown twice, and the results left are ranked 1, 2, ... again. Nothing else moves:
    best bets never hide a normal result."""
    if not pins:
        return result
    ids = {p.chunk.chunk_id for p in pins}

    def rest(items: list[Scored]) -> list[Scored]:
        return [r for r in items if r.hit is None or r.hit.chunk.chunk_id not in ids]

    shown = [replace(r, rank=i) for i, r in enumerate(rest(result.results), start=1)]
    return replace(result, pinned=pins, results=shown, below_threshold=rest(result.below_threshold),
                   not_shown=rest(result.not_shown))


@dataclass(frozen=True)
class SearchResult:
    query: str
    query_id: str  # what feedback on this search refers to (new for every search, cached or not; "" for a preview)
    embedder: str
    reranker: str | None
    device: str
    dtype: str
    timings_ms: dict[str, float]
    results: list[Scored]  # each with its hit; raw_score, score and band None when recall-only
    below_threshold: list[Scored] = field(default_factory=list)
    not_shown: list[Scored] = field(default_factory=list)  # at or above the threshold, cut by top_n or max_per_doc
    params: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    index_version: str = ""
    cached: bool = False  # served from the query cache: timings are those of the original search
    candidates: int = 0  # chunks recalled and (when a reranker is loaded) reranked
    calibrated: bool = False  # scores went through the fitted calibrator (settings.calibration), not the sigmoid
    also_searched: list[str] = field(default_factory=list)  # synonyms searched besides the query's own words
    reranker_role: str | None = None  # "serving" or "canary": which of the two scored it
    reranked: int = 0  # how many of the `candidates` the reranker scored (fewer under a latency budget)
    preview: bool = False  # `SearchService.preview`: recall order only, the reranked result is still to come
    pinned: list[Pinned] = field(default_factory=list)  # best bets shown above the results (`with_pins`)

    def to_dict(self, include_hidden: bool = False, show_cached: bool = True) -> dict[str, Any]:
        """The JSON shape of the API and `kb search --json`. `show_cached` False (a caller who is not an admin)
        leaves out `cached`: the cache is shared, so it would tell that someone else asked the same question."""
        out = {"query": self.query, "query_id": self.query_id, "embedder": self.embedder, "reranker": self.reranker,
               "device": self.device, "dtype": self.dtype, "timings_ms": self.timings_ms, "params": self.params,
               "reranker_role": self.reranker_role,
               "best_bets": [p.to_dict() for p in self.pinned],
               "results": [result_dict(r, self.reranker) for r in self.results],
               "hidden": len(self.below_threshold),
               "more": len(self.not_shown), "also_searched": self.also_searched,
               "index_version": self.index_version, "cached": self.cached, "calibrated": self.calibrated,
               "reranked": self.reranked, "candidates": self.candidates}
        if not show_cached:
            del out["cached"]
        if self.preview:
            out["preview"] = True
        if self.warnings:
            out["warnings"] = self.warnings
        if include_hidden:
            out["below_threshold"] = [result_dict(r, self.reranker) for r in self.below_threshold]
            out["not_shown"] = [result_dict(r, self.reranker) for r in self.not_shown]
        return out
