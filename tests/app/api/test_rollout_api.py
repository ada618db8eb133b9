"""A running API (real uvicorn, real HTTP) follows promotions, rollbacks, a canary and a shadow without a restart."""

from __future__ import annotations

import time

import httpx
import pytest

from app.components import load_unshared, rollout_store
from app.identity import Caller
from app.services import promotion
from rerank.validation.gate import GateLimits
from tests.app.api.conftest import live_server, make_service
from tests.tiny_models import build_tiny_cross_encoder

pytestmark = pytest.mark.slow  # a real uvicorn following promotions, canaries and shadows: several seconds on 2 cores


ROOT = Caller("root", None, admin=True, via="cli")
PERMISSIVE = GateLimits(min_top_overlap=0.0, max_score_shift=1.0)
QUERIES = ["how do I reset my VPN token", "annual leave days", "laptop first day", "试用期离职要提前几天",
           "salary band B3", "firewall reset", "VPN portal", "days of leave", "IT desk", "离职通知"]
KEYS = {"reader-key": ["everyone"], "admin-key": ["*"]}


@pytest.fixture(scope="module")
def api(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("rollout-api")
    v1 = build_tiny_cross_encoder(root / "models" / "reranker_v1", arch="bert", seed=11)
    v2 = build_tiny_cross_encoder(root / "models" / "reranker_v2", arch="bert", seed=12)
    served = make_service(root, embedder, v1, models_reload_s=0.2, cache_size=0, api_keys=KEYS)
    with live_server(served.app()) as url:
        yield url, served.settings, v1, v2


def ask(url: str, query: str = "annual leave days", key: str = "reader-key") -> dict:
    r = httpx.post(url + "/search", json={"query": query, "threshold": 0.0}, headers={"Authorization": f"Bearer {key}"},
                   timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def info(url: str, key: str) -> dict:
    return httpx.get(url + "/info", headers={"Authorization": f"Bearer {key}"}, timeout=30).json()


def until(check, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"the API did not {what} within {timeout} s")
        time.sleep(0.1)


def test_the_api_switches_on_promotion_and_rollback_without_a_restart(api):
    url, settings, v1, v2 = api
    store = rollout_store(settings)
    assert ask(url)["reranker"] == str(v1)
    assert promotion.promote(store, v2, settings.reranker, ROOT, load=load_unshared, limits=PERMISSIVE).state is not None
    until(lambda: ask(url)["reranker"] == str(v2), "switch to the promoted model")
    body = ask(url, "how do I reset my VPN token")
    assert {r["reranker"] for r in body["results"]} == {str(v2)}
    models = info(url, "admin-key")["models"]
    assert models["serving"] == str(v2) and models["error"] is None
    assert models["history"][-1]["action"] == "promote" and models["history"][-1]["model"] == str(v2)
    reader = info(url, "reader-key")["models"]  # who promoted what, paths and errors are for admins
    assert reader["serving"] == str(v2) and reader["error"] is False
    assert "history" not in reader and "figures" not in reader

    promotion.rollback(store, settings.reranker, ROOT)
    until(lambda: ask(url)["reranker"] == str(v1), "switch back on rollback")


def test_a_canary_serves_a_share_and_a_shadow_is_compared_on_metrics(api):
    url, settings, v1, v2 = api
    store = rollout_store(settings)
    promotion.start_canary(store, v2, 0.5, settings.reranker, ROOT)
    until(lambda: info(url, "admin-key")["models"]["canary"], "start the canary")
    served_by = {q: ask(url, q)["reranker"] for q in QUERIES}
    assert set(served_by.values()) == {str(v1), str(v2)}
    assert all(ask(url, q)["reranker"] == m for q, m in served_by.items())  # stable per question
    promotion.stop_canary(store, ROOT)
    until(lambda: info(url, "admin-key")["models"]["canary"] is None, "end the canary")

    promotion.start_shadow(store, v2, settings.reranker, ROOT)
    until(lambda: info(url, "admin-key")["models"]["shadow"] == str(v2), "start the shadow")
    for q in QUERIES:
        assert ask(url, q)["reranker"] == str(v1)  # the shadow never answers
    figures = until(lambda: [s for s in info(url, "admin-key")["models"]["figures"]["shadow"]
                             if s["searches"] >= len(QUERIES)], "score every search in the shadow")
    assert figures[0]["serving"] == str(v1) and figures[0]["candidate"] == str(v2)
    metrics = httpx.get(url + "/metrics", headers={"Authorization": "Bearer admin-key"}, timeout=30).text
    assert f'kb_shadow_top5_overlap_count{{candidate="{v2}",serving="{v1}"}}' in metrics
    assert f'kb_model_rerank_seconds_count{{model="{v2}",role="shadow"}}' in metrics
    assert f'kb_model_rerank_seconds_count{{model="{v1}",role="serving"}}' in metrics
    promotion.stop_shadow(store, ROOT)
    until(lambda: info(url, "admin-key")["models"]["shadow"] is None, "end the shadow")
