"""Prometheus metrics of one API instance (its own registry, so several apps in one process never collide).

Latency histograms per stage (embed, recall, rerank, total) give P50/P95/P99 through `histogram_quantile`;
also request counts by route and status, reranker batch sizes (pairs scored per call), the distribution of the
scores served, and query-cache hits.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("kb_requests", "HTTP requests", ["route", "method", "status"], registry=r)
        self.request_seconds = Histogram("kb_request_seconds", "HTTP request latency", ["route"],
                                         buckets=_LATENCY_BUCKETS, registry=r)
        self.stage_seconds = Histogram("kb_stage_seconds", "search latency by stage", ["stage"],
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.rerank_batch = Histogram("kb_rerank_batch_size", "pairs scored per reranker call",
                                      buckets=(1, 5, 10, 20, 50, 100, 200, 500, 1000), registry=r)
        self.scores = Histogram("kb_result_score", "normalised reranker scores returned",
                                buckets=tuple(i / 10 for i in range(1, 11)), registry=r)
        self.cache = Counter("kb_query_cache", "query-cache lookups", ["result"], registry=r)
        self.rejected = Counter("kb_rejected", "requests refused for load", registry=r)
        self.in_flight = Gauge("kb_in_flight", "requests being computed", registry=r)
        self.index_chunks = Gauge("kb_index_chunks", "chunks in the live index", registry=r)

    def observe_search(self, timings_ms: dict[str, float], candidates: int, scores: list[float | None],
                       cached: bool, reranked: bool) -> None:
        self.cache.labels("hit" if cached else "miss").inc()
        if cached:
            return
        for stage, ms in timings_ms.items():
            if stage != "rerank" or reranked:
                self.stage_seconds.labels(stage).observe(ms / 1000)
        if reranked:
            self.rerank_batch.observe(candidates)
        for s in scores:
            if s is not None:
                self.scores.observe(s)

    def observe_rerank(self, n_pairs: int, seconds: float, scores: list[float]) -> None:
        self.rerank_batch.observe(n_pairs)
        self.stage_seconds.labels("rerank").observe(seconds)
        for s in scores:
            self.scores.observe(s)

    def render(self) -> bytes:
        return generate_latest(self.registry)
