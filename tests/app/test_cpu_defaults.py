"""Issue 31 through the product: a CPU search without a budget setting reranks under the default budget, a GPU or
0 means none; `/info` tells everyone how the reranker scores (backend and why, the exact path and why, the budget);
the settings' defaults (backend auto, exact_max_share 0.5). Nothing asserts what the random model ranks."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.identity import OPERATOR
from app.services.request import SearchRequest
from rerank.budget import DEFAULT_CPU_BUDGET_MS

DOCS = {
    "vpn.md": "# VPN token\n\nTo reset a forgotten VPN token, open the self-service portal and choose Reset.\n",
    "leave.md": "# Annual leave\n\nEmployees get twenty days of annual leave a year.\n",
}
CORPUS_SETTINGS = {"allowed_hosts": ["testserver"]}
Q = "how do I reset my VPN token"


def test_a_cpu_search_without_a_budget_setting_gets_the_cpu_default(service):
    assert service.reranker.device == "cpu" and service.defaults.rerank_budget_ms is None
    plan = service.plan(SearchRequest.of(Q), OPERATOR)
    assert plan.request.rerank_budget_ms == DEFAULT_CPU_BUDGET_MS
    res = service.search(SearchRequest.of(Q, top_k=10, top_n=2, threshold=0.0), OPERATOR)
    assert res.params["rerank_budget_ms"] == DEFAULT_CPU_BUDGET_MS and res.reranked >= 2  # at least top_n
    # 0 (a request's, or the setting's) means every candidate
    assert service.plan(SearchRequest.of(Q, rerank_budget_ms=0), OPERATOR).request.rerank_budget_ms == 0
    full = service.search(SearchRequest.of(Q, top_k=10, top_n=3, threshold=0.0, rerank_budget_ms=0), OPERATOR)
    assert full.params["rerank_budget_ms"] is None and full.reranked == full.candidates


def test_info_says_how_the_reranker_scores(corpus, service):
    with TestClient(corpus.app()) as client:
        info = client.get("/info").json()
    reranking = info["reranking"]
    assert reranking["backend"] == service.reranker.info().backend == "torch"
    assert reranking["budget_ms"] == DEFAULT_CPU_BUDGET_MS and reranking["budget_reason"] == "the CPU default"
    assert reranking["exact_path"] is None and reranking["dtype"] == "float32"  # no reduced copy, no re-scoring
    assert "exact_choice" in info["reranker"] and "backend_choice" in info["reranker"]  # the admin's full record


def test_settings_default_to_auto_and_the_set_share(monkeypatch):
    from app.settings import Settings

    monkeypatch.delenv("KB_RERANK_BACKEND", raising=False)  # the suite pins torch (tests/conftest.py)
    s = Settings(_env_file=None)
    assert (s.rerank_backend, s.rerank_exact_max_share, s.rerank_budget_ms) == ("auto", 0.5, None)
    monkeypatch.setenv("KB_RERANK_EXACT_MAX_SHARE", "1.5")
    with pytest.raises(ValueError, match="rerank_exact_max_share"):
        Settings(_env_file=None)
