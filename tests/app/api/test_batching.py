"""Cross-request batching in the API, over real HTTP: concurrent /rerank and /search answers with batching on equal
those with it off (to float32 noise), the batcher's rounds show on /info and /metrics, and admission lets enough
requests in for them to be batched."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from app.api.limits import BATCHED_ACTIVE, active_limit
from rerank.coalesce import BatchingReranker
from tests.app.api.conftest import live_server, make_service

QUERIES = ["how do I reset my VPN token", "annual leave days", "laptop first day", "试用期离职要提前几天",
           "firewall", "new employees"]
DOCS = [["Reset the VPN token in the portal.", "Annual leave is twenty days.", "试用期员工离职应当提前三日通知公司"],
        ["Laptops come from the IT desk.", "The canteen opens at noon."],
        ["Employees get twenty days of annual leave a year. " * 40, "VPN", "员工应当申请年假，通过人力资源系统办理。"]]


@pytest.fixture(scope="module")
def served(tmp_path_factory, embedder, tiny_reranker):
    # no query cache: every request must reach the reranker, with batching on and off alike
    return make_service(tmp_path_factory.mktemp("batching"), embedder, tiny_reranker, cache_size=0,
                        rerank_batch_wait_ms=20)


def _requests() -> list[tuple[str, dict]]:
    out = []
    for i in range(24):
        if i % 2:
            out.append(("/rerank", {"query": QUERIES[i % len(QUERIES)], "texts": DOCS[i % len(DOCS)]}))
        else:
            out.append(("/search", {"query": QUERIES[i % len(QUERIES)], "top_k": 10, "top_n": 5, "threshold": 0.0}))
    return out


def _scores(route: str, body: dict) -> list[tuple[object, float]]:
    if route == "/rerank":
        return [(x["index"], x["score"]) for x in body]
    return [(x["chunk_id"], x["score"]) for x in body["results"]]


def _run_concurrently(base: str) -> list[list[tuple[object, float]]]:
    reqs = _requests()

    def call(i: int):
        route, body = reqs[i]
        r = httpx.post(base + route, json=body, timeout=120)
        assert r.status_code == 200, r.text
        return _scores(route, r.json())

    with ThreadPoolExecutor(len(reqs)) as pool:
        return list(pool.map(call, range(len(reqs))))


@pytest.mark.slow
def test_concurrent_answers_with_batching_equal_those_without(served):
    off = served.settings.model_copy(update={"rerank_batching": False})
    with live_server(served.app(off)) as base:
        assert httpx.get(base + "/info").json()["limits"]["admitted_at_once"] == off.api_max_concurrency
        want = _run_concurrently(base)
        assert "kb_rerank_batch_requests_count" not in httpx.get(base + "/metrics").text
    app = served.app()
    with live_server(app) as base:
        live = app.state.kb.live
        assert isinstance(live.service.reranker, BatchingReranker)
        got = _run_concurrently(base)
        info = httpx.get(base + "/info").json()
        metrics = httpx.get(base + "/metrics").text
    for g, w in zip(got, want, strict=True):
        assert [k for k, _ in g] == [k for k, _ in w]
        assert [s for _, s in g] == pytest.approx([s for _, s in w], abs=1e-6)
    assert info["limits"]["admitted_at_once"] == BATCHED_ACTIVE and info["limits"]["rerank_batching"]
    batching = info["reranker"]["details"]["batching"]
    assert batching["requests"] == len(_requests()) and 1 <= batching["rounds"] <= batching["requests"]
    assert batching["max_wait_ms"] == 20 and batching["max_batch_tokens"] == 16384
    name = re.escape(str(served.settings.reranker))
    count = re.search(rf'kb_rerank_batch_requests_count{{model="{name}"}} (\S+)', metrics)
    total = re.search(rf'kb_rerank_batch_requests_sum{{model="{name}"}} (\S+)', metrics)
    assert count and float(count.group(1)) == batching["rounds"]
    assert total and float(total.group(1)) == batching["requests"]
    assert re.search(rf'kb_rerank_batch_pairs_sum{{model="{name}"}} (\S+)', metrics)
    assert live.service.reranker.closed  # the server stopped: its batcher's worker too


def test_admission_is_raised_only_with_batching():
    assert active_limit(2, batching=False) == 2
    assert active_limit(2, batching=True) == BATCHED_ACTIVE
    assert active_limit(64, batching=True) == 64  # a larger setting is kept
