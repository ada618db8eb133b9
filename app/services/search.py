"""`SearchService`: the one place where the stages meet. recall K → rerank → threshold → top N.

The CLI, the API and the app all call it; `app.components` builds it from parts that are already loaded (embedder,
index, reranker, calibrator, defaults), and nothing changes them afterwards: a new index means a new service
(`with_index`). Each `search()` reports per-stage timings and a `query_id`. When the reranker could not be loaded
the service says so (`reranker_error`) and serves recall-only results whose `score`/`raw_score`/`band` are None:
a retrieval score is never passed off as a reranker score.

With a latency budget (`rerank_budget_ms`, `rerank.budget`) only the best-recalled candidates that fit are reranked;
the rest follow the reranked results in recall order, with None scores too, and `SearchResult.reranked` says how
many were reranked of `candidates`. `recall_preview` is the recall-only pass the app shows while reranking runs.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.types import Chunk
from rerank.budget import Meters, rerank_within
from rerank.params import check_budget_ms, check_threshold, check_top_n
from rerank.protocol import Reranker
from rerank.types import Scored, band_of
from retrieval.embedder import Embedder
from retrieval.filters import FilterError, Filters
from retrieval.index import KnowledgeIndex
from retrieval.recall import recall
from retrieval.types import Hit, check_mode, check_top_k
from retrieval.vocabulary import Vocabulary

from ..errors import KbError
from ..identity import Caller

if TYPE_CHECKING:
    from ..quality.calibration import Calibrator
    from .events import EventLog
    from .model_stats import ModelStats
    from .shadow import ShadowRunner

PRESETS = {"strict": 0.75, "balanced": 0.5, "recall": 0.4}


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


def in_canary(query: str, share: float) -> bool:
    """Whether a canary with this `share` (0..1) reranks `query`: decided by a hash of the query text, so the same
    question always goes to the same model (results stay comparable, cacheable and explainable)."""
    if share <= 0:
        return False
    digest = hashlib.blake2b(query.strip().casefold().encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


@dataclass(frozen=True)
class SearchResult:
    query: str
    query_id: str  # what feedback on this search refers to (new for every search, cached or not)
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
    preview: bool = False  # `recall_preview`: recall order only, the reranked result is still to come

    def to_dict(self, include_hidden: bool = False, show_cached: bool = True) -> dict[str, Any]:
        """The JSON shape of the API and `kb search --json`. `show_cached` False (a caller who is not an admin)
        leaves out `cached`: the cache is shared, so it would tell that someone else asked the same question."""
        out = {"query": self.query, "query_id": self.query_id, "embedder": self.embedder, "reranker": self.reranker,
               "device": self.device, "dtype": self.dtype, "timings_ms": self.timings_ms, "params": self.params,
               "reranker_role": self.reranker_role,
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


def check_params(top_k: int, top_n: int, threshold: float, max_per_doc: int | None = None,
                 mode: str = "hybrid", rerank_budget_ms: int | None = None) -> None:
    """KbError (validation) naming the parameter, its value and the allowed range."""
    try:
        check_mode(mode)
        check_top_k(top_k)
        check_top_n(top_n)
        check_threshold(threshold)
        check_budget_ms(rerank_budget_ms)
    except ValueError as exc:
        raise KbError("validation", str(exc)) from None
    if max_per_doc is not None and (isinstance(max_per_doc, bool) or not isinstance(max_per_doc, int)
                                    or max_per_doc < 1):
        raise KbError("validation", f"max_per_doc must be at least 1 (or unset for no limit); got {max_per_doc}")


@dataclass(frozen=True)
class SearchDefaults:
    """What a search uses for every parameter it is not given (from settings: `app.components`)."""

    top_k: int = 50
    top_n: int = 5
    threshold: float = 0.5
    mode: str = "hybrid"
    max_per_doc: int | None = None
    merge: bool = False
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    rrf_k: int = 60
    rerank_budget_ms: int | None = None  # rerank what fits in this many ms (None or 0: every candidate)


def cap_per_document(results: Sequence[Scored], max_per_doc: int | None) -> list[Scored]:
    """Keep at most `max_per_doc` results of any one document, in the given (score) order; None keeps all."""
    if max_per_doc is None:
        return list(results)
    seen: dict[str, int] = {}
    kept = []
    for r in results:
        n = seen.get(r.hit.chunk.doc_id, 0)
        if n < max_per_doc:
            kept.append(r)
        seen[r.hit.chunk.doc_id] = n + 1
    return kept


def _joined_text(chunks: Sequence[Chunk]) -> str:
    """Neighbouring chunks' texts in order; a table's caption and header (`meta["table_head"]`, which every chunk of
    the table starts with) is shown once, above the first of them."""
    parts = []
    for before, c in zip([None, *chunks], chunks):
        head = c.meta.get("table_head")
        if before is not None and head and before.meta.get("table_head") == head and c.text.startswith(head + "\n"):
            parts.append(c.text[len(head) + 1:])
        else:
            parts.append(c.text)
    return "\n".join(parts)


def merge_adjacent(results: Sequence[Scored]) -> list[Scored]:
    """Merge results that are neighbouring chunks of one document into one passage, read in document order.

    The merged result keeps the best member's place, scores and band (the passage is shown because of it) and its
    text is the members' texts joined in position order, so a procedure split across two chunks reads whole (a
    table's header once, not once per chunk).
    """
    def pos(r: Scored) -> int:
        return int(r.hit.chunk.meta.get("position", 0))

    groups: list[list[Scored]] = []
    for r in results:  # best first: each result joins the first group it touches
        for g in groups:
            if g[0].hit.chunk.doc_id == r.hit.chunk.doc_id and any(abs(pos(m) - pos(r)) == 1 for m in g):
                g.append(r)
                break
        else:
            groups.append([r])
    merged = []
    for rank, g in enumerate(groups, start=1):
        best = g[0]
        if len(g) == 1:
            merged.append(replace(best, rank=rank))
            continue
        members = sorted(g, key=pos)
        c = best.hit.chunk
        chunk = Chunk(chunk_id=c.chunk_id, doc_id=c.doc_id, text=_joined_text([m.hit.chunk for m in members]),
                      title=c.title, section=c.section, page=members[0].hit.chunk.page,
                      n_tokens=sum(m.hit.chunk.n_tokens for m in members),
                      meta={**c.meta, "merged": [m.hit.chunk.chunk_id for m in members]})
        merged.append(replace(best, rank=rank, hit=replace(best.hit, chunk=chunk)))
    return merged


class QueryCache:
    """A small thread-safe LRU of search results. Keys include the index version, so an ingest invalidates it."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[tuple, SearchResult] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple) -> SearchResult | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: tuple, value: SearchResult) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __contains__(self, key: tuple) -> bool:
        """Whether `key` is held, without counting a hit or a miss or refreshing it."""
        with self._lock:
            return key in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class _Plan:
    """One search's arguments after the defaults and checks (`SearchService._plan`)."""

    query: str
    index: KnowledgeIndex
    groups: list[str] | None
    filters: Filters | None
    top_k: int
    top_n: int
    threshold: float
    mode: str
    max_per_doc: int | None
    merge: bool
    budget_ms: int | None  # None: no budget
    reranker: Reranker | None
    role: str | None
    calibrator: Calibrator | None
    key: tuple
    params: dict[str, Any]


@dataclass(frozen=True, eq=False)
class SearchService:
    """Search over the parts it is given; see the module docstring. `index` None: none built yet (`search` then
    answers not_ready); `index_dir` is where it lives or will. `reranker_name` is what was asked for ("none": off)
    and `reranker_error` why it is not loaded; `calibrator` maps raw scores to calibrated ones (`kb tune --write`)."""

    embedder: Embedder
    index: KnowledgeIndex | None
    reranker: Reranker | None = None
    calibrator: Calibrator | None = None
    defaults: SearchDefaults = field(default_factory=SearchDefaults)
    cache: QueryCache = field(default_factory=lambda: QueryCache(256))
    index_dir: Path | None = None
    reranker_name: str = "none"
    reranker_error: str | None = None
    calibration_error: str | None = None
    events: EventLog | None = None  # where searches are recorded (None: not recorded)
    vocabulary: Vocabulary = field(default_factory=Vocabulary)  # synonyms (and the user dictionary the index uses)
    canary: Reranker | None = None  # a candidate that reranks `canary_share` of the searches (by query text)
    canary_share: float = 0.0
    shadow: ShadowRunner | None = None  # a candidate that scores every search in the background, for comparison
    stats: ModelStats | None = None  # latency and scores per model (and the shadow's agreement)
    meters: Meters = field(default_factory=Meters)  # each reranker's measured speed, for the latency budget

    def with_index(self, index: KnowledgeIndex | None) -> SearchService:
        """The same models and cache over another index (or version of it); this service is unchanged."""
        return replace(self, index=index, index_dir=index.root if index is not None else self.index_dir)

    def scorer_for(self, query: str) -> tuple[Reranker | None, str | None]:
        """(the reranker that scores `query`, its role: "serving" or "canary"); (None, None) when recall-only."""
        if self.canary is not None and self.reranker is not None and in_canary(query, self.canary_share):
            return self.canary, "canary"
        return self.reranker, "serving" if self.reranker is not None else None

    @property
    def warnings(self) -> list[str]:
        return [w for w in (self.embedder.warning, self.reranker_error, self.calibration_error) if w]

    # ---- searching -----------------------------------------------------------------------------------------
    def search(self, query: str, *, caller: Caller, top_k: int | None = None, top_n: int | None = None,
               threshold: float | None = None, mode: str | None = None, max_per_doc: int | None = None,
               merge: bool | None = None, filters: Filters | None = None,
               rerank_budget_ms: int | None = None) -> SearchResult:
        """Recall `top_k` among the chunks `caller` may read of the documents that meet `filters`, rerank, keep
        scores ≥ `threshold`, at most `max_per_doc` per document, cut to `top_n`.

        Every argument left as None takes the defaults. The caller's groups and the filters are enforced inside
        recall, so a restricted caller gets a full K of chunks it may see and no count of the others. The lexical
        leg also searches the synonyms of the query's terms (`result.also_searched`). `merge` joins neighbouring
        chunks of one document into one passage. With `rerank_budget_ms` (0: none) only the best-recalled
        candidates that fit are reranked (at least `top_n`; `rerank.budget`): the reranked results come first, and
        while fewer than `top_n` are shown the rest follow in recall order with None scores (`result.reranked` of
        `result.candidates`, and a warning). Repeated identical searches on the same index version and vocabulary
        come from an LRU cache (`result.cached`); a result the budget cut short is never cached, so a complete one
        is never replaced by it. A caller restricted to groups gets each hit's `retrieval_score` as 1 / its recall
        position, never the raw BM25 or fused score (`as_seen_by`). Raises KbError: validation for bad parameters,
        an unknown filter key or a bad date, or an empty query; not_ready when there is no index.
        """
        p = self._plan(query, caller, top_k, top_n, threshold, mode, max_per_doc, merge, filters, rerank_budget_ms)
        query, index, reranker, role, calibrator = p.query, p.index, p.reranker, p.role, p.calibrator
        query_id = uuid.uuid4().hex
        hit = self.cache.get(p.key)
        if hit is not None:
            return self._recorded(replace(hit, query_id=query_id, cached=True), caller)
        if not index.chunks:
            return self._empty(p, query_id)
        t0 = time.perf_counter()
        rec = self._recall(p)
        t1 = time.perf_counter()
        with self.shadow.serving() if self.shadow is not None else nullcontext():  # the shadow waits meanwhile
            shown, more, hidden, scored = self._rank(query, rec.hits, p.top_n, p.threshold, p.max_per_doc, p.merge,
                                                     reranker, calibrator, p.budget_ms)
        t2 = time.perf_counter()
        n = len(scored)
        if reranker is not None:
            self._observed(query, rec.hits[:n], reranker, role, t2 - t1, scored)
        timings = {"embed": round(rec.timings_ms["embed"], 2),
                   "recall": round((t1 - t0) * 1000 - rec.timings_ms["embed"], 2),
                   "rerank": round((t2 - t1) * 1000, 2) if reranker else 0.0,
                   "total": round((t2 - t0) * 1000, 2)}
        cut = reranker is not None and n < len(rec.hits)
        budget_note = [f"reranked {n} of {len(rec.hits)} candidates within the {p.budget_ms} ms budget; the rest "
                       "are in recall order"] if cut else []
        choice = reranker.device_choice if reranker else self.embedder.choice
        result = SearchResult(
            query=query, query_id=query_id, embedder=self.embedder.name,
            reranker=reranker.name if reranker else None, device=choice.device, dtype=choice.dtype,
            timings_ms=timings, results=shown, below_threshold=hidden, not_shown=more, params=p.params,
            warnings=self.warnings + ([rec.note] if rec.note else []) + self._reranker_reads(query) + budget_note,
            index_version=index.version, candidates=len(rec.hits),
            calibrated=calibrator is not None and reranker is not None, also_searched=rec.also,
            reranker_role=role, reranked=n)
        if not cut:  # a budget-cut result would later be served as if complete
            self.cache.put(p.key, result)
        return self._recorded(result, caller)

    def is_cached(self, query: str, *, caller: Caller, top_k: int | None = None, top_n: int | None = None,
                  threshold: float | None = None, mode: str | None = None, max_per_doc: int | None = None,
                  merge: bool | None = None, filters: Filters | None = None,
                  rerank_budget_ms: int | None = None) -> bool:
        """Whether `search` with these arguments would be answered from the cache (at once): the app then shows no
        recall preview. Nothing is recorded and the cache's hit counts do not move. Raises like `search`."""
        p = self._plan(query, caller, top_k, top_n, threshold, mode, max_per_doc, merge, filters, rerank_budget_ms)
        return p.key in self.cache

    def recall_preview(self, query: str, *, caller: Caller, top_k: int | None = None, top_n: int | None = None,
                       threshold: float | None = None, mode: str | None = None, max_per_doc: int | None = None,
                       merge: bool | None = None, filters: Filters | None = None,
                       rerank_budget_ms: int | None = None) -> SearchResult:
        """What `search` with the same arguments recalls, before any reranking: the first `top_n` hits in recall
        order (at most `max_per_doc` per document), scores None, `preview` True, `reranked` 0. The same recall as
        `search` (the caller's groups and the filters inside it), so it never shows what the caller may not read.
        For the app to show at once while `search` reranks: not cached and not recorded as a search (the search
        that follows is), and its `query_id` takes no feedback. Raises like `search`."""
        p = self._plan(query, caller, top_k, top_n, threshold, mode, max_per_doc, merge, filters, rerank_budget_ms)
        if not p.index.chunks:
            return replace(self._empty(p, ""), preview=True)
        t0 = time.perf_counter()
        rec = self._recall(p)
        t1 = time.perf_counter()
        shown, more, _, _ = self._rank(query, rec.hits, p.top_n, p.threshold, p.max_per_doc, False, None)
        timings = {"embed": round(rec.timings_ms["embed"], 2),
                   "recall": round((t1 - t0) * 1000 - rec.timings_ms["embed"], 2), "rerank": 0.0,
                   "total": round((t1 - t0) * 1000, 2)}
        e = self.embedder
        return SearchResult(p.query, "", e.name, None, e.choice.device, e.choice.dtype, timings, shown, not_shown=more,
                            params=p.params, warnings=[rec.note] if rec.note else [],
                            index_version=p.index.version, candidates=len(rec.hits), also_searched=rec.also,
                            preview=True)

    def _plan(self, query: str, caller: Caller, top_k: int | None, top_n: int | None, threshold: float | None,
              mode: str | None, max_per_doc: int | None, merge: bool | None, filters: Filters | None,
              budget_ms: int | None) -> _Plan:
        """The arguments with the defaults filled in and checked, the scorer, and the cache key."""
        d = self.defaults
        top_k = d.top_k if top_k is None else top_k
        top_n = d.top_n if top_n is None else top_n
        threshold = d.threshold if threshold is None else threshold
        mode = d.mode if mode is None else mode
        max_per_doc = d.max_per_doc if max_per_doc is None else max_per_doc
        merge = d.merge if merge is None else merge
        budget_ms = d.rerank_budget_ms if budget_ms is None else budget_ms
        check_params(top_k, top_n, threshold, max_per_doc, mode, budget_ms)
        query = query.strip()
        if not query:
            raise KbError("validation", "query is empty; type a question")
        index = self.index
        if index is None:
            raise KbError("not_ready", f"no index at {self.index_dir}; ingest documents first")
        groups = None if caller.groups is None else list(caller.groups)
        reranker, role = self.scorer_for(query)
        calibrator = self.calibrator if role == "serving" else None  # fitted on the serving model's scale only
        # no budget in the key: only complete results are cached, and they answer a budgeted search too
        key = (query, top_k, top_n, threshold, mode, max_per_doc, merge, caller.groups, index.version,
               reranker.name if reranker else None, id(calibrator), filters.key() if filters else (),
               self.vocabulary.key())
        params = {"top_k": top_k, "top_n": top_n, "threshold": threshold, "mode": mode, "groups": groups,
                  "max_per_doc": max_per_doc, "merge": merge, "filters": filters.to_dict() if filters else {},
                  "rerank_budget_ms": budget_ms or None}
        return _Plan(query, index, groups, filters, top_k, top_n, threshold, mode, max_per_doc, merge,
                     budget_ms or None, reranker, role, calibrator, key, params)

    def _recall(self, p: _Plan):
        """Recall for the plan, with the scores the caller may see (`as_seen_by`): every face (API, CLI, app, the
        cache) gets its hits from here."""
        d = self.defaults
        try:
            rec = recall(p.index, self.embedder, p.query, p.top_k, p.mode, p.groups, d.dense_weight,
                         d.lexical_weight, d.rrf_k, filters=p.filters, also=self.vocabulary.synonyms.expand(p.query))
        except FilterError as exc:
            raise KbError("validation", str(exc)) from None
        return replace(rec, hits=as_seen_by(rec.hits, p.groups))

    def _empty(self, p: _Plan, query_id: str) -> SearchResult:
        return SearchResult(p.query, query_id, self.embedder.name, p.reranker.name if p.reranker else None,
                            self.embedder.choice.device, self.embedder.choice.dtype,
                            {"embed": 0.0, "recall": 0.0, "rerank": 0.0, "total": 0.0}, [], params=p.params,
                            warnings=self.warnings + ["the index is empty: ingest documents first"],
                            index_version=p.index.version)

    def _observed(self, query: str, hits: list[Hit], reranker: Reranker, role: str, seconds: float,
                  scored: list[Scored]) -> None:
        """Per-model figures, and the search handed to the shadow model (never waited for)."""
        if self.stats is not None:
            self.stats.observe_rerank(reranker.name, role, seconds, [r.score for r in scored])
        if self.shadow is not None and role == "serving" and hits:  # nothing recalled: nothing to compare
            raw = [r.raw_score for r in sorted(scored, key=lambda r: r.index)]  # in `hits` order
            self.shadow.submit(query, hits, reranker.name, raw)

    def _reranker_reads(self, query: str) -> list[str]:
        """A warning when the reranker's tokenizer cannot read the query's script: its scores then say little."""
        check = getattr(self.reranker, "coverage", None)
        cov = check(query) if check is not None else None
        if cov is None or not cov.unreadable():
            return []
        return [f"reranker {self.reranker.name} cannot read this query's {cov.describe()}: its scores say little "
                "about these results; use a multilingual reranker (e.g. BAAI/bge-reranker-v2-m3)"]

    def _recorded(self, result: SearchResult, caller: Caller) -> SearchResult:
        if self.events is not None:  # queued, never waited for (app.services.events)
            self.events.record_search(result, caller)
        return result

    def _rank(self, query: str, hits: list[Hit], top_n: int, threshold: float, max_per_doc: int | None = None,
              merge: bool = False, reranker: Reranker | None = None, calibrator: Calibrator | None = None,
              budget_ms: int | None = None) -> tuple[list[Scored], list[Scored], list[Scored], list[Scored]]:
        """(shown, not shown though above the threshold — cut by N or the per-document cap —, below threshold,
        the candidates the reranker scored), scored by `reranker` (None: recall-only) within `budget_ms` (None: all)
        and mapped by `calibrator` (None: the sigmoid). Candidates the budget left out follow the reranked ones
        that pass, in recall order with None scores, and count as above the threshold (nothing says otherwise)."""
        if reranker is None:
            results: list[Scored] = []
            rest = hits
        else:
            done = rerank_within(query, hits, reranker, self.meters.of(reranker.name), budget_ms, floor=top_n)
            results, rest = done.scored, hits[done.n:]
            if calibrator is not None:  # non-decreasing in the raw score: the order stays as reranked
                results = [replace(r, score=p, band=band_of(p)) for r in results
                           for p in [float(calibrator.apply(r.raw_score))]]
        # not reranked (no reranker, or beyond the budget): recall order, no scores (`index`: position in `hits`)
        unscored = [Scored(index=i, text=h.chunk.text, raw_score=None, score=None, band=None, rank=i + 1, hit=h)
                    for i, h in enumerate(rest, start=len(hits) - len(rest))]
        if reranker is None:  # recall-only: the recall order is the order shown
            above, hidden = unscored, []
            kept = cap_per_document(above, max_per_doc)
            kept = merge_adjacent(kept) if merge else kept
            unscored = []
        else:
            above = [r for r in results if r.score >= threshold]
            hidden = [r for r in results if r.score < threshold]
            kept = cap_per_document(above, max_per_doc)
            kept = merge_adjacent(kept) if merge else kept
        if unscored:  # after every reranked result that passes; the per-document cap counts both
            merged = {cid for r in kept for cid in r.hit.chunk.meta.get("merged", ())}
            kept = cap_per_document(kept + [r for r in unscored if r.hit.chunk.chunk_id not in merged], max_per_doc)
            above = above + unscored
        shown = [replace(r, rank=i) for i, r in enumerate(kept[:top_n], start=1)]
        used = {cid for r in shown for cid in r.hit.chunk.meta.get("merged", [r.hit.chunk.chunk_id])}
        more = [replace(r, rank=i) for i, r in enumerate((r for r in above if r.hit.chunk.chunk_id not in used),
                                                         start=len(shown) + 1)]
        return shown, more, hidden, results
