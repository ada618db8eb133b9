"""Figures per reranker model, kept by a running API or app for as long as it runs: rerank latency and served
scores per model and role (serving, canary, shadow), and how a shadow candidate agrees with the serving model
(top-5 overlap, rank correlation, score shift). The Status page and `/info` read `snapshot()`; `/metrics` exposes
the same counts as Prometheus histograms through `collector()`. Thumbs per model come from the events store
(`EventLog.analytics()["by_reranker"]`), which records the model that scored each search.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rerank.validation.gate import Comparison

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
SCORE_BUCKETS = tuple(i / 10 for i in range(1, 11))
FRACTION_BUCKETS = (0.2, 0.4, 0.6, 0.8, 1.0)  # top-5 overlap takes the values 0, 0.2, ... 1
CORRELATION_BUCKETS = (-0.5, 0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
SHIFT_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
RECENT = 1000  # values kept for percentiles on the Status page


@dataclass
class Histogram:
    """Cumulative-bucket counts (Prometheus' shape) and the most recent values (for percentiles)."""

    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT))

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf

    def observe(self, x: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, x)] += 1
        self.total += x
        self.n += 1
        self.recent.append(x)

    def cumulative(self) -> list[tuple[str, int]]:
        out, running = [], 0
        for bound, c in zip((*map(str, self.buckets), "+Inf"), self.counts, strict=True):
            running += c
            out.append((bound, running))
        return out

    def summary(self) -> dict[str, float | int | None]:
        vals = sorted(self.recent)

        def q(p: float) -> float | None:
            return vals[min(len(vals) - 1, int(p * len(vals)))] if vals else None

        return {"n": self.n, "mean": self.total / self.n if self.n else None, "p50": q(0.5), "p95": q(0.95)}


@dataclass
class _Shadow:
    overlap: Histogram = field(default_factory=lambda: Histogram(FRACTION_BUCKETS))
    correlation: Histogram = field(default_factory=lambda: Histogram(CORRELATION_BUCKETS))
    shift: Histogram = field(default_factory=lambda: Histogram(SHIFT_BUCKETS))


class ModelStats:
    """Thread-safe accumulators; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latency: dict[tuple[str, str], Histogram] = {}
        self._scores: dict[tuple[str, str], Histogram] = {}
        self._shadow: dict[tuple[str, str], _Shadow] = {}
        self.shadow_dropped = 0  # searches the shadow queue had no room for

    def observe_rerank(self, model: str, role: str, seconds: float, scores: Iterable[float]) -> None:
        key = (model, role)
        with self._lock:
            self._latency.setdefault(key, Histogram(LATENCY_BUCKETS)).observe(seconds)
            hist = self._scores.setdefault(key, Histogram(SCORE_BUCKETS))
            for s in scores:
                hist.observe(s)

    def observe_shadow(self, serving: str, candidate: str, search: Comparison) -> None:
        """One search's candidates as scored by the serving model and by the shadow (`gate.compare_models` on one
        query: top-5 overlap, Kendall's tau over all candidates, mean score shift)."""
        with self._lock:
            sh = self._shadow.setdefault((serving, candidate), _Shadow())
            sh.overlap.observe(search.top_overlap)
            if search.kendall_tau is not None:
                sh.correlation.observe(search.kendall_tau)
            sh.shift.observe(search.mean_score_shift)

    def dropped(self) -> None:
        with self._lock:
            self.shadow_dropped += 1

    def snapshot(self) -> dict[str, Any]:
        """{"models": [{model, role, searches, latency_ms {mean, p50, p95}, score {mean, p50}}],
        "shadow": [{serving, candidate, searches, top5_overlap, rank_correlation, score_shift}], "shadow_dropped"}"""
        def ms(v: float | None) -> float | None:
            return None if v is None else round(v * 1000, 1)

        with self._lock:
            models = []
            for (model, role), lat in sorted(self._latency.items()):
                s = lat.summary()
                sc = self._scores[(model, role)].summary()
                models.append({"model": model, "role": role, "searches": s["n"],
                               "latency_ms": {"mean": ms(s["mean"]), "p50": ms(s["p50"]), "p95": ms(s["p95"])},
                               "score": {"mean": sc["mean"], "p50": sc["p50"]}})
            shadow = [{"serving": a, "candidate": b, "searches": sh.overlap.n,
                       "top5_overlap": sh.overlap.summary()["mean"],
                       "rank_correlation": sh.correlation.summary()["mean"],
                       "score_shift": sh.shift.summary()["mean"]} for (a, b), sh in sorted(self._shadow.items())]
            return {"models": models, "shadow": shadow, "shadow_dropped": self.shadow_dropped}

    def collector(self) -> _Collector:
        return _Collector(self)


class _Collector:
    """Prometheus view of a `ModelStats` (registered on the API's registry)."""

    def __init__(self, stats: ModelStats):
        self.stats = stats

    def describe(self) -> list:
        return []  # collected lazily: the model labels are only known as searches come

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        s = self.stats
        latency = HistogramMetricFamily("kb_model_rerank_seconds", "rerank latency per model and role "
                                        "(serving, canary, shadow)", labels=["model", "role"])
        scores = HistogramMetricFamily("kb_model_score", "reranker scores (0..1) per model and role",
                                       labels=["model", "role"])
        overlap = HistogramMetricFamily("kb_shadow_top5_overlap", "share of the serving model's top 5 the shadow "
                                        "candidate also puts in its top 5, per search", labels=["serving", "candidate"])
        corr = HistogramMetricFamily("kb_shadow_rank_correlation", "Kendall tau of the serving and shadow scores "
                                     "of a search's candidates", labels=["serving", "candidate"])
        shift = HistogramMetricFamily("kb_shadow_score_shift", "mean |score difference| between the serving model "
                                      "and the shadow candidate, per search", labels=["serving", "candidate"])
        with s._lock:
            for (model, role), h in s._latency.items():
                latency.add_metric([model, role], h.cumulative(), h.total)
            for (model, role), h in s._scores.items():
                scores.add_metric([model, role], h.cumulative(), h.total)
            for (a, b), sh in s._shadow.items():
                overlap.add_metric([a, b], sh.overlap.cumulative(), sh.overlap.total)
                corr.add_metric([a, b], sh.correlation.cumulative(), sh.correlation.total)
                shift.add_metric([a, b], sh.shift.cumulative(), sh.shift.total)
            dropped = CounterMetricFamily("kb_shadow_dropped", "searches not shadow-scored: the queue was full",
                                          value=s.shadow_dropped)
        yield from (latency, scores, overlap, corr, shift, dropped)
