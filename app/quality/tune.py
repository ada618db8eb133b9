"""Tuning from labelled queries (`kb tune`, the app's Tuning page): threshold, K and score calibration.

The steps, each a plain function over plain data so that the CLI and the UI share them:

1. `app.quality.evaluate.open_dataset(folder, ...)` → `EvalSet`: a BEIR folder or a sample set (`data/samples`),
   with its index.
2. `collect(service, labelled, top_k)` → `Collected`: every recalled chunk of every query with its reranker raw
   score (logit), its sigmoid score, its recall rank and its relevance grade, through `SearchService` (threshold
   0, top_n = top_k), so the scores are exactly the ones served.
3. `fit_calibrator(method, raw, labels)` (Platt or isotonic, see `rerank.calibration`), `threshold_curve(...)`,
   `recommend_threshold(...)` for a target precision or recall, `answer_effect(...)` on unanswerable queries,
   `cross_validate(...)` for held-out figures.
4. `sweep_k(...)` (recall@K and quality after reranking K candidates, from the collected data) and `time_k(...)`
   (measured latency per K), `choose_k(...)`.
5. what `kb tune --write` chooses is saved in the shared database (`app.services.saved_settings`).

Labels: a pair is relevant when its grade is > 0. On the sample set pairs are chunks judged by evidence passages;
on BEIR a chunk takes its document's grade. Recall figures of a threshold are relative to the relevant chunks
that recall found (the ceiling is recall@K, reported by the K sweep).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from rerank.calibration import Calibrator, fit_calibrator, fit_isotonic, fit_platt, load_calibrator
from rerank.params import TOP_N_RANGE

from ..services.request import SearchRequest
from .evaluate import EvalSet, ranked_run, score_run
from .latency import percentiles

if TYPE_CHECKING:
    from retrieval.types import Hit

    from ..services.search import SearchService

__all__ = ["Calibrator", "fit_calibrator", "fit_platt", "fit_isotonic", "load_calibrator",
           "collect", "Collected", "threshold_curve", "recommend_threshold", "answer_effect", "cross_validate",
           "sweep_k", "time_k", "choose_k", "sigmoid"]

MAX_TOP_K = TOP_N_RANGE[1]  # every recalled chunk must come back with its score, and a search shows at most this many
K_STEPS = (5, 10, 20, 30, 50, 75, 100)  # the K values the Tuning page sweeps


# ---- data ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """One recalled chunk for one query. `unit`: what is judged (chunk id, or document id on BEIR)."""

    unit: str
    chunk_id: str
    recall_rank: int  # 1-based position in recall, before reranking
    raw_score: float  # the reranker's logit
    score: float  # its sigmoid, as served without calibration
    grade: int  # 0 = not relevant


@dataclass(frozen=True)
class QueryScores:
    qid: str
    answerable: bool
    relevant: dict[str, int]  # every labelled relevant unit, recalled or not
    candidates: list[Candidate]  # best reranked first
    timings_ms: dict[str, float]


@dataclass(frozen=True)
class Collected:
    dataset: str
    reranker: str
    embedder: str
    top_k: int
    queries: list[QueryScores]

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(raw scores, grades, query index) of every collected pair, as arrays."""
        raw = [c.raw_score for q in self.queries for c in q.candidates]
        grades = [c.grade for q in self.queries for c in q.candidates]
        qidx = [i for i, q in enumerate(self.queries) for _ in q.candidates]
        return np.asarray(raw, dtype=np.float64), np.asarray(grades, dtype=np.int64), np.asarray(qidx, dtype=np.int64)


def recall_order(hits: Sequence[Hit]) -> list[Hit]:
    """Hits back in recall order. Recall sorts by retrieval score with ties in first-seen order, and fusion sees
    the dense list first, so (score, dense before lexical-only, rank in that leg) reproduces it exactly."""
    return sorted(hits, key=lambda h: (-h.retrieval_score, h.dense_rank is None,
                                       h.dense_rank if h.dense_rank is not None else (h.lexical_rank or 0)))


def collect(service: SearchService, labelled: EvalSet, top_k: int = 50, mode: str | None = None,
            tick: Callable[[int, int], None] | None = None) -> Collected:
    """Search every labelled query (with its groups) through `service` and keep every recalled chunk's scores.

    `service` must be loaded over `labelled.index` with a working reranker. Raises ValueError for a top_k out of
    1..100 or a service without a reranker (naming its load error).
    """
    if not 1 <= top_k <= MAX_TOP_K:
        raise ValueError(f"top_k for tuning must be between 1 and {MAX_TOP_K} (every recalled chunk is scored and "
                         f"returned); got {top_k}")
    if service.reranker is None:
        why = service.reranker_error or f"the reranker is {service.reranker_name!r}"
        raise ValueError(f"tuning needs reranker scores, and no reranker is loaded ({why}); pass --reranker with a "
                         "cross-encoder folder (e.g. models/<name>) or hub name")
    service = service.unrecorded()  # labelled queries are no one's question: kept out of the events store
    out = []
    for n, q in enumerate(labelled.queries, start=1):
        # Every candidate, unmerged and uncapped: calibration learns from the reranker's scores as they are.
        res = service.search(SearchRequest.of(q.text, top_k=top_k, top_n=top_k, threshold=0.0, mode=mode,
                                              max_per_doc=top_k, merge=False, rerank_budget_ms=0),  # all scored
                             q.caller)
        results = res.results + res.not_shown + res.below_threshold
        rank = {h.chunk.chunk_id: r for r, h in enumerate(recall_order([x.hit for x in results]), start=1)}
        cands = []
        for x in results:
            unit = labelled.unit_of(x.hit.chunk)
            cands.append(Candidate(unit, x.hit.chunk.chunk_id, rank[x.hit.chunk.chunk_id], float(x.raw_score),
                                   float(x.score), int(q.relevant.get(unit, 0))))
        out.append(QueryScores(q.qid, q.answerable, dict(q.relevant), cands, dict(res.timings_ms)))
        if tick:
            tick(n, len(labelled.queries))
    return Collected(labelled.name, service.reranker.name, service.embedder.name, top_k, out)


# ---- thresholds ----------------------------------------------------------------------------------------------
def sigmoid(raw: Sequence[float] | np.ndarray) -> np.ndarray:
    """The reranker's own normalisation (what search serves without calibration), vectorised."""
    from scipy.special import expit

    return expit(np.asarray(raw, dtype=np.float64))


@dataclass(frozen=True)
class CurvePoint:
    """What a threshold does to the collected pairs: shown = score ≥ threshold."""

    threshold: float
    shown: int
    relevant_shown: int
    precision: float | None  # None when nothing is shown
    recall: float  # of the relevant pairs collected
    f1: float
    shown_fraction: float


def threshold_curve(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray,
                    thresholds: Sequence[float] | None = None) -> list[CurvePoint]:
    """Precision, recall, F1 and fraction shown at each threshold (default: every distinct score), ascending."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel() > 0
    if s.shape != y.shape:
        raise ValueError(f"scores and labels must have the same length; got {s.size} and {y.size}")
    if s.size == 0:
        raise ValueError("no scored pairs: nothing was recalled for the labelled queries")
    ts = np.unique(s) if thresholds is None else np.asarray(sorted(thresholds), dtype=np.float64)
    order = np.sort(s)
    pos = np.sort(s[y])
    n_pos = int(y.sum())
    points = []
    for t in ts:
        shown = int(s.size - np.searchsorted(order, t, side="left"))
        tp = int(pos.size - np.searchsorted(pos, t, side="left"))
        precision = tp / shown if shown else None
        recall = tp / n_pos if n_pos else 0.0
        f1 = 2 * tp / (shown + n_pos) if shown + n_pos else 0.0
        points.append(CurvePoint(float(t), shown, tp, precision, recall, f1, shown / s.size))
    return points


@dataclass(frozen=True)
class Recommendation:
    """The threshold for a target, with what it gives on the labelled pairs. `precision_low`: the lower end of
    the 95% Wilson interval of that precision (few shown pairs make a precision uncertain)."""

    target: str  # "precision" or "recall"
    target_value: float
    threshold: float
    precision: float
    precision_low: float
    recall: float
    f1: float
    shown: int
    shown_fraction: float


def recommend_threshold(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray,
                        target_precision: float | None = None,
                        target_recall: float | None = None) -> Recommendation | None:
    """For a target precision: the lowest threshold whose shown pairs reach it (the most recall at that
    precision). For a target recall: the highest threshold that keeps it (the most precision). Exactly one
    target, in 0..1. None when no threshold reaches the target precision on these pairs.
    """
    if (target_precision is None) == (target_recall is None):
        raise ValueError("give exactly one of target_precision and target_recall")
    target = target_precision if target_precision is not None else target_recall
    name = "target_precision" if target_precision is not None else "target_recall"
    if not 0.0 < target <= 1.0:
        raise ValueError(f"{name} must be in (0, 1]; got {target}")
    curve = threshold_curve(scores, labels)
    if target_precision is not None:
        ok = [p for p in curve if p.precision is not None and p.precision >= target_precision]
        point = ok[0] if ok else None
    else:
        ok = [p for p in curve if p.recall >= target_recall]
        point = ok[-1] if ok else None
    if point is None:
        return None
    from scipy.stats import binomtest

    low = binomtest(point.relevant_shown, point.shown).proportion_ci(method="wilson").low
    return Recommendation("precision" if target_precision is not None else "recall", float(target),
                          point.threshold, float(point.precision or 0.0), float(low), point.recall, point.f1,
                          point.shown, point.shown_fraction)


def answer_effect(collected: Collected, scores_of: Callable[[np.ndarray], np.ndarray], threshold: float,
                  top_n: int) -> dict[str, int]:
    """What a person would see per query at this threshold and top_n: unanswerable queries that still show
    something (false answers), answerable ones that show nothing, and answerable ones whose shown results include
    a relevant one. `scores_of` maps raw logits to the served score (sigmoid, or a calibrator's `apply`)."""
    out = {"unanswerable": 0, "unanswerable_shown": 0, "answerable": 0, "answerable_empty": 0,
           "answerable_hit": 0, "top_n": top_n, "threshold": threshold}
    for q in collected.queries:
        served = scores_of(np.asarray([c.raw_score for c in q.candidates], dtype=np.float64))
        shown = [c for c, s in zip(q.candidates, np.atleast_1d(served)) if s >= threshold][:top_n]
        if q.answerable:
            out["answerable"] += 1
            out["answerable_empty"] += not shown
            out["answerable_hit"] += any(c.grade > 0 for c in shown)
        else:
            out["unanswerable"] += 1
            out["unanswerable_shown"] += bool(shown)
    return out


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared error of probabilities against 0/1 labels (lower is better)."""
    return float(np.mean((np.asarray(probs) - (np.asarray(labels) > 0)) ** 2))


def calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: |mean probability − share relevant| over equal-width bins, weighted by size."""
    p, y = np.asarray(probs, dtype=np.float64), (np.asarray(labels) > 0).astype(np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    return float(sum(abs(p[which == b].mean() - y[which == b].mean()) * np.sum(which == b)
                     for b in range(bins) if np.any(which == b)) / p.size)


def cross_validate(collected: Collected, method: str, target_precision: float | None = None,
                   target_recall: float | None = None, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Held-out figures, folds split by query: calibration error of the sigmoid vs the fitted calibrator, and
    the precision/recall that a threshold recommended on the other folds actually gives on each held-out fold
    (pooled). Folds whose training part lacks a label kind or misses the target are skipped and counted."""
    raw, grades, qidx = collected.pairs()
    y = grades > 0
    rng = np.random.default_rng(seed)
    fold_of_query = rng.permutation(len(collected.queries)) % folds
    fold = fold_of_query[qidx]
    probs = np.full(raw.size, np.nan)
    shown_tp = shown = relevant = 0
    skipped = 0
    for f in range(folds):
        train, test = fold != f, fold == f
        if not test.any():
            continue
        try:
            cal = fit_calibrator(method, raw[train], grades[train])
        except ValueError:
            skipped += 1
            continue
        probs[test] = cal.apply(raw[test])
        rec = recommend_threshold(cal.apply(raw[train]), grades[train], target_precision, target_recall)
        if rec is None:
            skipped += 1
            continue
        shown_mask = cal.apply(raw[test]) >= rec.threshold
        shown_tp += int(np.sum(shown_mask & y[test]))
        shown += int(np.sum(shown_mask))
        relevant += int(np.sum(y[test]))
    done = ~np.isnan(probs)
    return {"folds": folds, "folds_skipped": skipped,
            "brier_sigmoid": round(brier(sigmoid(raw[done]), y[done]), 4) if done.any() else None,
            "brier_calibrated": round(brier(probs[done], y[done]), 4) if done.any() else None,
            "ece_sigmoid": round(calibration_error(sigmoid(raw[done]), y[done]), 4) if done.any() else None,
            "ece_calibrated": round(calibration_error(probs[done], y[done]), 4) if done.any() else None,
            "heldout_precision": round(shown_tp / shown, 4) if shown else None,
            "heldout_recall": round(shown_tp / relevant, 4) if relevant else None}


# ---- K -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KPoint:
    k: int
    recall: float  # recall@K of the labelled relevant units (recall only)
    hit: float  # hit@N after reranking the top K
    ndcg: float  # nDCG@10 after reranking the top K
    latency_ms: float | None = None  # p50 of a whole search at this K (see time_k)
    rerank_ms: float | None = None


def sweep_k(collected: Collected, ks: Sequence[int], top_n: int) -> list[KPoint]:
    """Quality against K from one collection at the largest K: reranker scores do not depend on the other
    candidates, so reranking the top K is the collected list restricted to recall rank ≤ K."""
    bad = [k for k in ks if not 1 <= k <= collected.top_k]
    if bad:
        raise ValueError(f"K values must be between 1 and the collected top_k {collected.top_k}; got {bad}")
    qrels = {q.qid: q.relevant for q in collected.queries if q.answerable}
    if not qrels:
        raise ValueError("the K sweep needs answerable queries; every labelled query is unanswerable")
    points = []
    for k in sorted(set(ks)):
        recall_run, rerank_run = {}, {}
        for q in collected.queries:
            if not q.answerable:
                continue
            in_k = [c for c in q.candidates if c.recall_rank <= k]
            recall_run[q.qid] = ranked_run([c.unit for c in sorted(in_k, key=lambda c: c.recall_rank)])
            rerank_run[q.qid] = ranked_run([c.unit for c in in_k])  # candidates are in rerank order
        r = score_run(qrels, recall_run, [f"recall@{k}"])[f"recall@{k}"]
        m = score_run(qrels, rerank_run, [f"hit@{top_n}", "ndcg@10"])
        points.append(KPoint(k, r, m[f"hit@{top_n}"], m["ndcg@10"]))
    return points


def time_k(service: SearchService, labelled: EvalSet, ks: Sequence[int], n_queries: int = 20,
           mode: str | None = None) -> dict[int, dict[str, float]]:
    """Measured p50 latency (ms) of a whole search and of its rerank stage at each K, over the first
    `n_queries` labelled queries (after one warm-up search). Each query is timed at every K in turn, so a
    change in machine load affects all K alike."""
    queries = labelled.queries[:max(1, n_queries)]
    ks = sorted(set(ks))
    service = service.unrecorded()
    # A cached result would report the timings of its first search: the cache is emptied before each one.
    service.cache.clear()
    service.search(SearchRequest.of(queries[0].text, top_k=ks[-1], top_n=1, threshold=0.0, mode=mode,
                                    rerank_budget_ms=0), queries[0].caller)
    total: dict[int, list[float]] = {k: [] for k in ks}
    rerank: dict[int, list[float]] = {k: [] for k in ks}
    for q in queries:
        for k in ks:
            service.cache.clear()
            # what all K cost, whatever budget is set
            res = service.search(SearchRequest.of(q.text, top_k=k, top_n=min(k, MAX_TOP_K), threshold=0.0, mode=mode,
                                                  rerank_budget_ms=0), q.caller)
            total[k].append(res.timings_ms["total"])
            rerank[k].append(res.timings_ms["rerank"])
    return {k: {"p50_ms": percentiles(total[k])["p50"], "rerank_p50_ms": percentiles(rerank[k])["p50"]} for k in ks}


def choose_k(points: Sequence[KPoint], tolerance: float = 0.01) -> int:
    """The smallest K whose hit@N after reranking is within `tolerance` of the best K's: more candidates cost
    rerank time linearly and stop paying once the reranker's top N no longer changes."""
    best = max(p.hit for p in points)
    return min(p.k for p in points if p.hit >= best - tolerance)


def to_jsonable(obj: Any) -> Any:
    """Dataclasses (and lists/dicts of them) as plain JSON values."""
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


def parse_ks(text: str, example: str = "10,20,50,100") -> list[int]:
    """The K values of `--k-values`: comma-separated whole numbers within 1..MAX_TOP_K (ValueError otherwise)."""
    try:
        ks = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        ks = []
    if not ks or ks[0] < 1 or ks[-1] > MAX_TOP_K:
        raise ValueError(f"--k-values must be comma-separated whole numbers within 1..{MAX_TOP_K}, e.g. {example}; "
                         f"got {text!r}")
    return ks


# ---- what the Tuning page adds ----------------------------------------------------------------------------------
def ks_up_to(k_max: int) -> list[int]:
    """The K values swept: the usual steps up to `k_max`, and `k_max` itself."""
    return sorted({k for k in K_STEPS if k <= k_max} | {k_max})


def mrr_vs_k(collected: Collected, ks: Sequence[int]) -> dict[int, float]:
    """MRR@10 after reranking the top K recalled chunks, for each K (from one collection at the largest K, as
    `sweep_k` does for nDCG and hit@N)."""
    qrels = {q.qid: q.relevant for q in collected.queries if q.answerable}
    out = {}
    for k in ks:
        run = {q.qid: ranked_run([c.unit for c in q.candidates if c.recall_rank <= k])
               for q in collected.queries if q.answerable}
        out[k] = score_run(qrels, run, ["mrr@10"])["mrr@10"]
    return out


def histogram(scores: Sequence[float], bins: int = 20) -> pd.DataFrame:
    """Counts of scores in `bins` equal bins over 0..1: columns start, end, count."""
    counts, edges = np.histogram(np.asarray(scores, dtype=float), bins=bins, range=(0.0, 1.0))
    return pd.DataFrame({"start": edges[:-1], "end": edges[1:], "count": counts})
