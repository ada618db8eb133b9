"""POST /search with a latency budget, over a real uvicorn: `reranked` of `candidates`, each result's `reranked`,
and out-of-range budgets refused with 422 naming the field. The meter's speed is pinned (1 token a second) so the
cut does not depend on this machine's speed; the reranking itself is real."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from app.services.search import QueryCache
from rerank.budget import Meters, Throughput
from tests.app.api.conftest import Served, live_server


@pytest.fixture(scope="module")
def url(served):
    svc = replace(served.service, cache=QueryCache(0), meters=Meters())
    with live_server(Served(served.settings, svc).app()) as base:
        yield base


def test_search_with_a_budget_says_how_many_were_reranked(url, monkeypatch):
    monkeypatch.setattr(Throughput, "rate", property(lambda self: 1.0))
    body = {"query": "how do I reset my VPN token", "top_k": 10, "top_n": 2, "threshold": 0.0,
            "include_hidden": True}
    out = httpx.post(url + "/search", json=body | {"rerank_budget_ms": 1}, timeout=60).json()
    assert out["reranked"] == 2 < out["candidates"]
    assert [r["reranked"] for r in out["results"]] == [True, True]
    assert out["not_shown"] and all(not r["reranked"] and r["score"] is None for r in out["not_shown"])
    assert any("within the 1 ms budget" in w for w in out["warnings"])
    full = httpx.post(url + "/search", json=body | {"rerank_budget_ms": 0}, timeout=60).json()
    assert full["reranked"] == full["candidates"] == out["candidates"]
    assert all(r["reranked"] for r in full["results"] + full["not_shown"])


@pytest.mark.parametrize("bad", [-1, 600_001, "fast", 2.5, True, "500"])
def test_a_bad_budget_is_422_naming_the_field(url, bad):
    r = httpx.post(url + "/search", json={"query": "vpn", "rerank_budget_ms": bad}, timeout=60)
    assert r.status_code == 422
    assert "rerank_budget_ms" in r.text
