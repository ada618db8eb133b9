"""Prometheus metrics of one API instance (its own registry, so several apps in one process never collide).

Latency histograms per stage (embed, recall, rerank, total) give P50/P95/P99 through `histogram_quantile`;
also request counts by route and status, reranker batch sizes (pairs scored per call), the distribution of the
scores served, query-cache hits, searches with and without an answer (the no-answer rate), judgments recorded (also
per reranker model), and searches the events store dropped or could not write. Per-model rerank latency and scores
and a shadow model's agreement come from `app.services.model_stats`, registered on the same registry; the rounds of
cross-request batching (`rerank.coalesce`) from `BatchingCollector`; audit-log entries by outcome (refused admin
attempts included, across rotations) from `AuditCollector`.
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
        self.answers = Counter("kb_search_answers", "searches by whether a result passed the threshold",
                               ["answered"], registry=r)
        self.feedback = Counter("kb_feedback", "judgments recorded", ["useful"], registry=r)
        self.feedback_by_model = Counter("kb_model_feedback", "judgments recorded, by the reranker that scored the "
                                         "search judged (a canary against the serving model)", ["model", "useful"],
                                         registry=r)
        self.events_dropped = Gauge("kb_events_dropped", "searches not recorded: the events queue was full",
                                    registry=r)
        self.events_write_errors = Gauge("kb_events_write_errors", "searches not recorded: the events database "
                                         "could not be written", registry=r)
        self.events_up = Gauge("kb_events_up", "1 when searches are being recorded, 0 when the events store is off "
                               "or could not be opened", registry=r)

    def observe_search(self, timings_ms: dict[str, float], candidates: int, scores: list[float | None],
                       cached: bool, reranked: bool) -> None:
        self.answers.labels("yes" if scores else "no").inc()
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

    def render(self, events_stats=None) -> bytes:
        """The metrics as Prometheus text; `events_stats` None: no events store is recording."""
        self.events_up.set(0 if events_stats is None else 1)
        if events_stats is not None:
            self.events_dropped.set(events_stats.dropped)
            self.events_write_errors.set(events_stats.write_errors)
        return generate_latest(self.registry)


class BatchingCollector:
    """Prometheus view of the cross-request batchers serving now (`rerank.coalesce`; the serving reranker and a
    canary), read from the live service at each scrape: `kb_rerank_batch_requests` (requests per round) and
    `kb_rerank_batch_pairs` (pairs per round) histograms, `kb_rerank_batch_failed_rounds`, per model. A batcher is
    new after a model swap, so its counts start again (Prometheus reads that as a counter reset)."""

    def __init__(self, service) -> None:
        self.service = service  # () -> the SearchService serving now

    def describe(self) -> list:
        return []  # collected lazily: which models batch is known only when scraped

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        from rerank.coalesce import BatchingReranker

        requests = HistogramMetricFamily("kb_rerank_batch_requests", "requests scored together per reranker "
                                         "forward-pass round (cross-request batching)", labels=["model"])
        pairs = HistogramMetricFamily("kb_rerank_batch_pairs", "(query, passage window) pairs per batching round",
                                      labels=["model"])
        failed = CounterMetricFamily("kb_rerank_batch_failed_rounds", "batching rounds whose scoring raised (every "
                                     "request of the round got the error)", labels=["model"])
        svc = self.service()
        seen = set()
        for model in (svc.reranker, svc.canary) if svc is not None else ():
            if not isinstance(model, BatchingReranker) or model.name in seen:
                continue
            seen.add(model.name)
            st = model.stats()
            requests.add_metric([model.name], st.requests_per_round, st.requests)
            pairs.add_metric([model.name], st.pairs_per_round, st.pairs)
            failed.add_metric([model.name], st.failed_rounds)
        return [requests, pairs, failed]


class AuditCollector:
    """`kb_audit_entries{outcome}`: audit-log entries (admin actions done, attempts refused) since the log began,
    read from the log's own count at each scrape, so it survives rotation and restarts and adds up every process
    writing the log."""

    def __init__(self, audit) -> None:
        self.audit = audit  # app.services.audit.AuditLog

    def describe(self) -> list:
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily("kb_audit_entries", "audit-log entries by outcome (done, refused), rotated-away "
                                     "ones included", labels=["outcome"])
        for outcome, n in sorted(self.audit.counts().items()):
            family.add_metric([outcome], n)
        return [family]
