"""`SearchService`: the one place where the stages meet — plan → recall → rank — each a method called once per
search.

The CLI, the API and the app build a `SearchRequest` (`app.services.request`) from their input and hand it over
with the caller: `search(request, caller)` is `plan`, then the query cache (`cached`), else `recall` and `rank`.
The app calls the stages itself so that it can show the recall stage's candidates at once (`preview`, no second
recall) and replace them with the ranked ones. `app.components` builds the service from parts that are already
loaded (embedder, index, reranker, calibrator, defaults), and nothing changes them afterwards: a new index means a
new service (`with_index`). Each search reports per-stage timings and a `query_id`. When the reranker could not be
loaded the service says so (`reranker_error`) and serves recall-only results whose `score`/`raw_score`/`band` are
None: a retrieval score is never passed off as a reranker score.

With a latency budget (`rerank_budget_ms`, `rerank.budget`) only the best-recalled candidates that fit are
reranked; the rest follow the reranked results in recall order, with None scores too, and `SearchResult.reranked`
says how many were reranked of `candidates`. What is shown of the candidates (threshold, top-N, the per-document
cap, merged neighbours) is decided in the rerank layer (`rerank.rank.select`).

Best bets (`app.services.bestbets`) are pinned above the results of every search people make (`with_pins`), after
the query cache: the cache holds the ranked results alone, and the bets that apply are looked up, with the caller's
groups and filters, at each search (`app.services.pinning`), so a bet added or removed shows at once and a cached
result never carries a passage pinned for someone else.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import OrderedDict
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from rerank.budget import Meters, effective_budget_ms, rerank_within
from rerank.calibration import Calibrator
from rerank.protocol import Reranker
from rerank.rank import calibrated, select
from rerank.types import Scored
from retrieval.embedder import Embedder
from retrieval.filters import FilterError
from retrieval.index import KnowledgeIndex
from retrieval.recall import recall
from retrieval.types import Hit
from retrieval.vocabulary import Vocabulary

from ..errors import KbError
from ..identity import Caller
from .request import SearchDefaults, SearchRequest
from .results import Pinned, SearchResult, as_seen_by, with_pins

if TYPE_CHECKING:
    from .bestbets import BestBetsSource
    from .events import EventLog
    from .model_stats import ModelStats
    from .shadow import ShadowRunner


def in_canary(query: str, share: float) -> bool:
    """Whether a canary with this `share` (0..1) reranks `query`: decided by a hash of the query text, so the same
    question always goes to the same model (results stay comparable, cacheable and explainable)."""
    if share <= 0:
        return False
    digest = hashlib.blake2b(query.strip().casefold().encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


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
class Plan:
    """One search decided (`SearchService.plan`): the request with every default filled in, the caller's groups,
    the index version it runs on, the reranker that scores it (and its role and calibrator), and its cache key."""

    request: SearchRequest  # resolved: no None knob but filters
    caller: Caller
    index: KnowledgeIndex
    groups: list[str] | None
    reranker: Reranker | None
    role: str | None  # "serving" or "canary"
    calibrator: Calibrator | None
    key: tuple

    @property
    def params(self) -> dict:
        return self.request.params(self.groups)


@dataclass(frozen=True)
class Recalled:
    """The recall stage's output for one plan: the candidates, best first, with the scores the caller may see."""

    hits: list[Hit]
    embed_ms: float
    recall_ms: float  # besides embedding
    note: str | None = None  # why the recall differs from the mode asked for
    also: list[str] = field(default_factory=list)  # synonyms searched besides the query's own words


@dataclass(frozen=True, eq=False)
class SearchService:
    """Search over the parts it is given; see the module docstring. `index` None: none built yet (`plan` then
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
    best_bets: BestBetsSource | None = None  # passages pinned to questions (None: none shown)

    def with_index(self, index: KnowledgeIndex | None) -> SearchService:
        """The same models and cache over another index (or version of it); this service is unchanged."""
        return replace(self, index=index, index_dir=index.root if index is not None else self.index_dir)

    def unrecorded(self) -> SearchService:
        """The same service, its searches not recorded as people's and shown no best bets: for tuning, evaluation
        and benchmarks, whose searches are no one's question and whose figures are the ranking's own."""
        return replace(self, events=None, best_bets=None)

    def scorer_for(self, query: str) -> tuple[Reranker | None, str | None]:
        """(the reranker that scores `query`, its role: "serving" or "canary"); (None, None) when recall-only."""
        if self.canary is not None and self.reranker is not None and in_canary(query, self.canary_share):
            return self.canary, "canary"
        return self.reranker, "serving" if self.reranker is not None else None

    @property
    def warnings(self) -> list[str]:
        return [w for w in (self.embedder.warning, self.reranker_error, self.calibration_error) if w]

    # ---- the search ------------------------------------------------------------------------------------------
    def search(self, request: SearchRequest, caller: Caller) -> SearchResult:
        """Recall `top_k` among the chunks `caller` may read of the documents that meet the request's filters,
        rerank, keep scores ≥ `threshold`, at most `max_per_doc` per document, cut to `top_n` (every knob the
        request leaves None takes the defaults).

        The caller's groups and the filters are enforced inside recall, so a restricted caller gets a full K of chunks
        it may see and no count of the others. The lexical leg also searches the synonyms of the query's terms
        (`result.also_searched`). `merge` joins neighbouring chunks of one document into one passage. With
        `rerank_budget_ms` (0: none; unset: a default on a CPU, none on a GPU) only the best-recalled candidates that
        fit are reranked (at least `top_n`; `rerank.budget`): the reranked results come first, and while fewer than
        `top_n` are shown the rest follow in recall order with None scores (`result.reranked` of `result.candidates`,
        and a warning). Repeated identical searches on the same index version and vocabulary come from an LRU cache
        (`result.cached`); a result the budget cut short is never cached, so a complete one is never replaced by it. A
        caller restricted to groups gets each hit's `retrieval_score` as 1 / its recall position, never the raw BM25 or
        fused score (`as_seen_by`). Raises KbError: validation for an unknown filter key or a bad date; not_ready
        when there is no index."""
        plan = self.plan(request, caller)
        found = self.cached(plan)
        return found if found is not None else self.rank(plan, self.recall(plan))

    def plan(self, request: SearchRequest, caller: Caller) -> Plan:
        """The request with the defaults filled in, the index version and the scorer it will use, and its cache
        key. KbError not_ready when there is no index."""
        index = self.index
        if index is None:
            raise KbError("not_ready", f"no index at {self.index_dir}; ingest documents first")
        req = request.resolved(self.defaults)
        groups = None if caller.groups is None else list(caller.groups)
        reranker, role = self.scorer_for(req.query)
        # no budget set: a default on a CPU, none on a GPU (rerank.budget); 0 from here on means none
        req = replace(req, rerank_budget_ms=effective_budget_ms(req.rerank_budget_ms, reranker) or 0)
        calibrator = self.calibrator if role == "serving" else None  # fitted on the serving model's scale only
        # no budget in the key: only complete results are cached, and they answer a budgeted search too
        key = (req.query, req.top_k, req.top_n, req.threshold, req.mode, req.max_per_doc, req.merge, caller.groups,
               index.version, reranker.name if reranker else None, id(calibrator),
               req.filters.key() if req.filters else (), self.vocabulary.key(),
               # the cache holds no pins, but the app keeps each session's last result whole (pins included)
               self.best_bets.current().version if self.best_bets is not None else None)
        return Plan(req, caller, index, groups, reranker, role, calibrator, key)

    def cached(self, plan: Plan) -> SearchResult | None:
        """The cached result of this plan, recorded as a new search (a new `query_id`, `cached` True), or None."""
        hit = self.cache.get(plan.key)
        if hit is None:
            return None
        return self._recorded(replace(hit, query_id=uuid.uuid4().hex, cached=True), plan)

    def recall(self, plan: Plan) -> Recalled:
        """The candidates: up to `top_k` chunks the caller may read, best first, with the scores it may see
        (`as_seen_by`). KbError (validation) for a filter key no document the caller may read has."""
        r = plan.request
        if not plan.index.chunks:
            return Recalled([], 0.0, 0.0)
        d = self.defaults
        t0 = time.perf_counter()
        try:
            rec = recall(plan.index, self.embedder, r.query, r.top_k, r.mode, plan.groups, d.dense_weight,
                         d.lexical_weight, d.rrf_k, filters=r.filters,
                         synonyms=self.vocabulary.synonyms.expansions(r.query))
        except FilterError as exc:
            raise KbError("validation", str(exc)) from None
        total_ms = (time.perf_counter() - t0) * 1000
        embed_ms = rec.timings_ms["embed"]
        return Recalled(as_seen_by(rec.hits, plan.groups), embed_ms, total_ms - embed_ms, rec.note, rec.also)

    def preview(self, plan: Plan, recalled: Recalled) -> SearchResult:
        """What the recall stage found, before any reranking: the first `top_n` candidates in recall order (at
        most `max_per_doc` per document), scores None, `preview` True, `reranked` 0. For the app to show at once
        while `rank` reranks the same candidates: not cached and not recorded, and its `query_id` takes no
        feedback."""
        r = plan.request
        chosen = select(recalled.hits, None, r.top_n, r.threshold, r.max_per_doc)
        e = self.embedder
        timings = {"embed": round(recalled.embed_ms, 2), "recall": round(recalled.recall_ms, 2), "rerank": 0.0,
                   "total": round(recalled.embed_ms + recalled.recall_ms, 2)}
        found = SearchResult(r.query, "", e.name, None, e.choice.device, e.choice.dtype, timings, chosen.shown,
                             not_shown=chosen.more, params=plan.params, warnings=[recalled.note] if recalled.note
                             else [], index_version=plan.index.version, candidates=len(recalled.hits),
                             also_searched=recalled.also, preview=True)
        return with_pins(found, self.pins(plan))

    def rank(self, plan: Plan, recalled: Recalled) -> SearchResult:
        """Rerank the recalled candidates (within the request's budget), calibrate, and choose what is shown
        (`rerank.rank.select`); the result is cached (unless the budget cut it short) and recorded."""
        r, reranker = plan.request, plan.reranker
        query_id = uuid.uuid4().hex
        if not plan.index.chunks:
            return self._recorded(self._empty(plan, query_id), plan)
        hits = recalled.hits
        t1 = time.perf_counter()
        scored: list[Scored] | None = None
        if reranker is not None:
            with self.shadow.serving() if self.shadow is not None else nullcontext():  # the shadow waits meanwhile
                done = rerank_within(r.query, hits, reranker, self.meters.of(reranker.name), r.rerank_budget_ms or None,
                                     floor=r.top_n)
            scored = calibrated(done.scored, plan.calibrator.apply if plan.calibrator is not None else None)
        chosen = select(hits, scored, r.top_n, r.threshold, r.max_per_doc, r.merge)
        t2 = time.perf_counter()
        n = len(scored) if scored is not None else 0
        if reranker is not None:
            self._observed(r.query, hits[:n], reranker, plan.role, t2 - t1, scored)
        rerank_ms = (t2 - t1) * 1000 if reranker else 0.0
        timings = {"embed": round(recalled.embed_ms, 2), "recall": round(recalled.recall_ms, 2),
                   "rerank": round(rerank_ms, 2),
                   "total": round(recalled.embed_ms + recalled.recall_ms + rerank_ms, 2)}
        cut = reranker is not None and n < len(hits)
        budget_note = [f"reranked {n} of {len(hits)} candidates within the {r.rerank_budget_ms} ms budget; the "
                       "rest are in recall order"] if cut else []
        choice = reranker.device_choice if reranker else self.embedder.choice
        result = SearchResult(
            query=r.query, query_id=query_id, embedder=self.embedder.name,
            reranker=reranker.name if reranker else None, device=choice.device, dtype=choice.dtype,
            timings_ms=timings, results=chosen.shown, below_threshold=chosen.hidden, not_shown=chosen.more,
            params=plan.params,
            warnings=self.warnings + ([recalled.note] if recalled.note else []) + self._reranker_reads(r.query)
            + budget_note,
            index_version=plan.index.version, candidates=len(hits),
            calibrated=plan.calibrator is not None and reranker is not None, also_searched=recalled.also,
            reranker_role=plan.role, reranked=n)
        if not cut:  # a budget-cut result would later be served as if complete
            self.cache.put(plan.key, result)
        return self._recorded(result, plan)

    # ---- helpers -----------------------------------------------------------------------------------------------
    def _empty(self, plan: Plan, query_id: str) -> SearchResult:
        return SearchResult(plan.request.query, query_id, self.embedder.name,
                            plan.reranker.name if plan.reranker else None,
                            self.embedder.choice.device, self.embedder.choice.dtype,
                            {"embed": 0.0, "recall": 0.0, "rerank": 0.0, "total": 0.0}, [], params=plan.params,
                            warnings=self.warnings + ["the index is empty: ingest documents first"],
                            index_version=plan.index.version)

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

    def pins(self, plan: Plan) -> list[Pinned]:
        """The best bets this plan's caller sees for its question (`app.services.pinning`), the question read with
        its synonyms whatever the recall mode."""
        if self.best_bets is None:
            return []
        bets = self.best_bets.current()
        if not bets.bets:
            return []
        from .pinning import pinned  # here: most processes never hold a bet

        r = plan.request
        return pinned(bets, r.query, self.vocabulary.synonyms.expand(r.query), plan.index, plan.groups, r.filters)

    def _recorded(self, result: SearchResult, plan: Plan) -> SearchResult:
        """`result` with the plan's best bets pinned above it, recorded (with them) as the caller's search."""
        result = with_pins(result, self.pins(plan))
        if self.events is not None:  # queued, never waited for (app.services.events)
            self.events.record_search(result, plan.caller)
        return result
