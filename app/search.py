"""`SearchService`: the one place where the stages meet. recall K → rerank → threshold → top N.

The CLI, the API and the app all call it. Models and index are loaded once (`load()`); each `search()` call is
cheap to set up and reports per-stage timings. When the reranker cannot be loaded the service says so
(`reranker_error`) and serves recall-only results whose `score`/`raw_score`/`band` are None: a retrieval score
is never passed off as a reranker score.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ingest.types import Chunk
from rerank.types import Scored, band_of
from retrieval.embedder import Embedder
from retrieval.index import KnowledgeIndex
from retrieval.recall import recall
from retrieval.types import Hit

from .settings import Settings

log = logging.getLogger(__name__)

PRESETS = {"strict": 0.75, "balanced": 0.5, "recall": 0.4}


@dataclass(frozen=True)
class Result:
    rank: int
    hit: Hit
    raw_score: float | None
    score: float | None
    band: str | None

    def to_dict(self) -> dict[str, Any]:
        c = self.hit.chunk
        return {"rank": self.rank, "chunk_id": c.chunk_id, "doc_id": c.doc_id, "source": c.meta.get("source", ""),
                "title": c.title, "section": c.section, "page": c.page, "text": c.text,
                "retrieval_score": self.hit.retrieval_score, "leg": self.hit.leg,
                "raw_score": self.raw_score, "score": self.score, "band": self.band}


@dataclass(frozen=True)
class SearchResult:
    query: str
    embedder: str
    reranker: str | None
    device: str
    dtype: str
    timings_ms: dict[str, float]
    results: list[Result]
    below_threshold: list[Result] = field(default_factory=list)
    not_shown: list[Result] = field(default_factory=list)  # at or above the threshold, cut by top_n or max_per_doc
    params: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    index_version: str = ""
    cached: bool = False  # served from the query cache: timings are those of the original search
    candidates: int = 0  # chunks recalled and (when a reranker is loaded) reranked
    calibrated: bool = False  # scores went through the fitted calibrator (settings.calibration), not the sigmoid

    def to_dict(self, include_hidden: bool = False) -> dict[str, Any]:
        out = {"query": self.query, "embedder": self.embedder, "reranker": self.reranker, "device": self.device,
               "dtype": self.dtype, "timings_ms": self.timings_ms, "params": self.params,
               "results": [r.to_dict() for r in self.results], "hidden": len(self.below_threshold),
               "more": len(self.not_shown),
               "index_version": self.index_version, "cached": self.cached, "calibrated": self.calibrated}
        if self.warnings:
            out["warnings"] = self.warnings
        if include_hidden:
            out["below_threshold"] = [r.to_dict() for r in self.below_threshold]
            out["not_shown"] = [r.to_dict() for r in self.not_shown]
        return out


def check_params(top_k: int, top_n: int, threshold: float, max_per_doc: int | None = None) -> None:
    if not 1 <= top_k <= 1000:
        raise ValueError(f"top_k must be between 1 and 1000; got {top_k}")
    if not 1 <= top_n <= 100:
        raise ValueError(f"top_n must be between 1 and 100; got {top_n}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1; got {threshold}")
    if max_per_doc is not None and max_per_doc < 1:
        raise ValueError(f"max_per_doc must be at least 1 (or unset for no limit); got {max_per_doc}")


def cap_per_document(results: Sequence[Result], max_per_doc: int | None) -> list[Result]:
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


def merge_adjacent(results: Sequence[Result]) -> list[Result]:
    """Merge results that are neighbouring chunks of one document into one passage, read in document order.

    The merged result keeps the best member's place, scores and band (the passage is shown because of it) and its
    text is the members' texts joined in position order, so a procedure split across two chunks reads whole.
    """
    def pos(r: Result) -> int:
        return int(r.hit.chunk.meta.get("position", 0))

    groups: list[list[Result]] = []
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
        chunk = Chunk(chunk_id=c.chunk_id, doc_id=c.doc_id, text="\n".join(m.hit.chunk.text for m in members),
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

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class SearchService:
    def __init__(self, settings: Settings, index_dir: Path | None = None, embedder: str | None = None,
                 reranker: str | None = None):
        self.settings = settings
        self.index_dir = Path(index_dir if index_dir is not None else settings.index_dir)
        self.embedder_name = embedder if embedder is not None else settings.embedder
        self.reranker_name = reranker if reranker is not None else settings.reranker
        self.embedder: Embedder | None = None
        self.index: KnowledgeIndex | None = None
        self.reranker = None
        self.reranker_error: str | None = None
        self.calibrator = None  # app.calibration.Calibrator when settings.calibration names one (`kb tune --write`)
        self.calibration_error: str | None = None
        self.cache = QueryCache(settings.cache_size)

    # ---- loading -------------------------------------------------------------------------------------------
    def load(self, need_index: bool = True) -> SearchService:
        s = self.settings
        self.embedder = Embedder(self.embedder_name, s.device, s.dtype, str(s.models_dir)).load()
        if need_index:
            self.reload_index()
        self.load_reranker()
        return self

    def reload_index(self) -> None:
        if self.embedder is None:
            raise RuntimeError("SearchService.load() must be called before reload_index()")
        self.index = KnowledgeIndex.open(self.index_dir, self.embedder.info(), {}, self.settings.ann_threshold,
                                         create=False, milvus=self.settings.milvus_config())

    def load_reranker(self) -> None:
        from rerank.factory import get_reranker, is_disabled

        if is_disabled(self.reranker_name):
            self.reranker, self.reranker_error = None, None
            return
        s = self.settings
        try:
            self.reranker = get_reranker(self.reranker_name, device=s.device, dtype=s.reranker_dtype,
                                         batch_size=s.rerank_batch_size, max_length=s.rerank_max_length,
                                         long_passage=s.long_passage, models_dir=str(s.models_dir),
                                         api_key=s.reranker_api_key, backend=s.rerank_backend,
                                         quantize=s.rerank_quantize, threads=s.rerank_threads,
                                         exact_top=s.rerank_exact_top)
            self.reranker_error = None
        except Exception as exc:  # noqa: BLE001 — any load failure means recall-only, said loudly
            self.reranker = None
            self.reranker_error = f"reranker {self.reranker_name!r} could not be loaded ({exc}); " \
                                  "serving recall-only results (scores are not reranker scores)"
            log.warning(self.reranker_error)
        self.load_calibration()

    def load_calibration(self) -> None:
        """Read `settings.calibration`; an unreadable file is reported (warnings) and sigmoid scores are served."""
        from .calibration import load_calibrator

        self.calibrator, self.calibration_error = None, None
        if self.settings.calibration is None or self.reranker is None:
            return
        try:
            self.calibrator = load_calibrator(self.settings.calibration)
        except ValueError as exc:
            self.calibration_error = f"{exc}; serving uncalibrated (sigmoid) scores"
            log.warning(self.calibration_error)

    @property
    def warnings(self) -> list[str]:
        return [w for w in (self.embedder.warning if self.embedder else None, self.reranker_error,
                            self.calibration_error) if w]

    # ---- searching -----------------------------------------------------------------------------------------
    def search(self, query: str, top_k: int | None = None, top_n: int | None = None,
               threshold: float | None = None, groups: Sequence[str] | None = None,
               mode: str | None = None, max_per_doc: int | None = None,
               merge: bool | None = None) -> SearchResult:
        """Recall `top_k`, rerank, keep scores ≥ `threshold`, at most `max_per_doc` per document, cut to `top_n`.

        Every argument left as None takes the settings' default. `groups=None` means unrestricted; a list means
        only public chunks and those of these groups (enforced inside recall). `merge` joins neighbouring chunks
        of one document into one passage. Repeated identical searches on the same index version come from an LRU
        cache (`result.cached`). Raises ValueError for bad parameters or an empty query.
        """
        s = self.settings
        top_k = s.top_k if top_k is None else top_k
        top_n = s.top_n if top_n is None else top_n
        threshold = s.threshold if threshold is None else threshold
        mode = s.recall_mode if mode is None else mode
        max_per_doc = s.max_per_doc if max_per_doc is None else max_per_doc
        merge = s.merge_adjacent if merge is None else merge
        check_params(top_k, top_n, threshold, max_per_doc)
        query = query.strip()
        if not query:
            raise ValueError("query is empty; type a question")
        index = self.index
        if index is None or self.embedder is None:
            raise RuntimeError("SearchService.load() must be called before search()")
        key = (query, top_k, top_n, threshold, mode, max_per_doc, merge,
               None if groups is None else tuple(sorted(set(groups))), index.version,
               self.reranker.name if self.reranker else None, id(self.calibrator))
        hit = self.cache.get(key)
        if hit is not None:
            return replace(hit, cached=True)
        if not index.chunks:
            return SearchResult(query, self.embedder.name, self.reranker.name if self.reranker else None,
                                self.embedder.choice.device, self.embedder.choice.dtype,
                                {"embed": 0.0, "recall": 0.0, "rerank": 0.0, "total": 0.0}, [],
                                params={"top_k": top_k, "top_n": top_n, "threshold": threshold, "mode": mode},
                                warnings=self.warnings + ["the index is empty: ingest documents first"],
                                index_version=index.version)
        t0 = time.perf_counter()
        rec = recall(index, self.embedder, query, top_k, mode, groups, s.dense_weight, s.lexical_weight,
                     s.rrf_k)
        t1 = time.perf_counter()
        shown, more, hidden = self._rank(query, rec.hits, top_n, threshold, max_per_doc, merge)
        t2 = time.perf_counter()
        timings = {"embed": round(rec.timings_ms["embed"], 2),
                   "recall": round((t1 - t0) * 1000 - rec.timings_ms["embed"], 2),
                   "rerank": round((t2 - t1) * 1000, 2) if self.reranker else 0.0,
                   "total": round((t2 - t0) * 1000, 2)}
        choice = self.reranker.device_choice if self.reranker else self.embedder.choice
        device, dtype = choice.device, choice.dtype
        result = SearchResult(
            query=query, embedder=self.embedder.name,
            reranker=self.reranker.name if self.reranker else None,
            device=device, dtype=dtype, timings_ms=timings, results=shown, below_threshold=hidden, not_shown=more,
            params={"top_k": top_k, "top_n": top_n, "threshold": threshold, "mode": mode,
                    "groups": list(groups) if groups is not None else None, "max_per_doc": max_per_doc,
                    "merge": merge},
            warnings=self.warnings + ([rec.note] if rec.note else []), index_version=index.version,
            candidates=len(rec.hits), calibrated=self.calibrator is not None and self.reranker is not None)
        self.cache.put(key, result)
        return result

    def _rank(self, query: str, hits: list[Hit], top_n: int, threshold: float, max_per_doc: int | None = None,
              merge: bool = False) -> tuple[list[Result], list[Result], list[Result]]:
        """(shown, not shown though above the threshold — cut by N or the per-document cap —, below threshold)."""
        if self.reranker is None:
            results = [Result(i, h, None, None, None) for i, h in enumerate(hits, start=1)]
            above = results
            kept, hidden = cap_per_document(results, max_per_doc), []
        else:
            from rerank.rank import rerank

            scored: list[Scored] = rerank(query, hits, self.reranker)
            results = [Result(sc.rank, sc.hit, sc.raw_score, sc.score, sc.band) for sc in scored]
            if self.calibrator is not None:  # non-decreasing in the raw score: the order stays as reranked
                results = [replace(r, score=p, band=band_of(p)) for r in results
                           for p in [float(self.calibrator.apply(r.raw_score))]]
            above = [r for r in results if r.score >= threshold]
            kept = cap_per_document(above, max_per_doc)
            hidden = [r for r in results if r.score < threshold]
        if merge:
            kept = merge_adjacent(kept)
        shown = [replace(r, rank=i) for i, r in enumerate(kept[:top_n], start=1)]
        used = {cid for r in shown for cid in r.hit.chunk.meta.get("merged", [r.hit.chunk.chunk_id])}
        more = [replace(r, rank=i) for i, r in enumerate((r for r in above if r.hit.chunk.chunk_id not in used),
                                                         start=len(shown) + 1)]
        return shown, more, hidden
