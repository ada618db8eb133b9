"""Load, the short version of benchmarks/load_test.py (same client code) against a real uvicorn on loopback:
concurrent mixed /search and /rerank without a single failed request and without memory growth, and an overload
that is refused with quick 429s instead of queueing. No timing thresholds: only counts, statuses and orderings."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from benchmarks import load_test
from tests.app.api.conftest import live_server, make_service


def run(coro):
    """Run a client phase on a loop of its own thread: an earlier test (a browser or app driver) may have left
    this thread's event loop running, where asyncio.run() refuses to start."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="module")
def workload():
    return load_test.Workload(load_test.sample_queries(), load_test.sample_passages(), rerank_share=0.5)


def test_concurrent_mixed_traffic_has_no_errors_and_flat_memory(tmp_path, embedder, tiny_reranker, workload):
    svc = make_service(tmp_path, embedder, tiny_reranker)
    pid = os.getpid()  # the server runs in a thread of this process
    with live_server(svc.app()) as url:
        run(load_test.run_phase(url, workload, 2, 2.0, 10**6, None))  # warm-up: lazy buffers, caches
        phase = run(load_test.run_phase(url, workload, 5, 5.0, 2_000, pid, seed=1))
    summary = phase.summary(errors_exclude_429=False)
    assert summary["requests"] > 10 and summary["statuses"].get("200", 0) > 10, summary
    assert summary["errors"] == 0, summary["error_examples"]
    assert set(summary["latency_ms"]) == {"all_ok", "/search", "/rerank"}  # both routes were exercised
    rss = summary["rss_mb"]
    assert rss["end"] - rss["start"] < 150, rss  # flat: a leak per request would show over a few hundred


def test_overload_is_refused_with_quick_429s_not_queued(tmp_path, embedder, workload):
    """150 clients against the defaults, 2 running + 64 waiting: the surplus is refused at once. 64 waiting
    requests hold 64 threads, more than AnyIO's default pool of 40, so this also proves the pool is sized to the
    limits. Recall-only (reranker none), so that the refusal path is measured on its own."""
    svc = make_service(tmp_path, embedder, "none", api_max_concurrency=2, api_max_queue=64, cache_size=0)
    search_only = load_test.Workload(workload.queries, workload.passages, rerank_share=0.0)
    with live_server(svc.app()) as url:
        phase = run(load_test.run_phase(url, search_only, 150, 4.0, 3_000, None, seed=2))
    summary = phase.summary(errors_exclude_429=True)
    assert summary["errors"] == 0, summary["error_examples"]
    assert summary["statuses"].get("429", 0) > 0 and summary["statuses"].get("200", 0) > 0, summary["statuses"]
    refused, served = summary["rejected_429_latency_ms"], summary["latency_ms"]["all_ok"]
    assert refused["p50"] < served["p50"], (refused, served)  # answered without waiting for the work
