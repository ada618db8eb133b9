"""Every endpoint's shape over real HTTP (TestClient), with a real index and a tiny local cross-encoder."""

from __future__ import annotations

import math

import pytest

DESIGN_RESULT_KEYS = {"rank", "chunk_id", "doc_id", "source", "title", "section", "text", "retrieval_score",
                      "raw_score", "score", "band"}


def test_health_and_info(client, service):
    h = client.get("/health")
    assert h.status_code == 200 and h.json() == {"status": "ready"}  # nothing about the index without a credential
    info = client.get("/info").json()
    assert info["reranker"]["name"] == service.reranker.name and info["reranker_error"] is None
    assert info["device"] == "cpu" and info["dtype"] == "float32"
    assert info["index"]["chunks"] == len(service.index.chunks) > 0
    assert info["defaults"]["top_k"] == 50 and info["defaults"]["presets"]["strict"] == 0.75
    assert info["max_length"] == 512 and info["limits"]["max_documents"] == 1000


def test_search_follows_the_design_contract(client):
    r = client.post("/search", json={"query": "how do I reset my VPN token", "top_k": 10, "top_n": 3,
                                     "threshold": 0.0})
    assert r.status_code == 200
    body = r.json()
    assert set(body["timings_ms"]) == {"embed", "recall", "rerank", "total"} and body["timings_ms"]["rerank"] > 0
    assert body["reranker"] and body["device"] == "cpu" and body["dtype"] == "float32"
    assert 1 <= len(body["results"]) <= 3
    for i, res in enumerate(body["results"], start=1):
        assert DESIGN_RESULT_KEYS <= set(res) and res["rank"] == i
        assert math.isclose(res["score"], 1 / (1 + math.exp(-res["raw_score"])), rel_tol=1e-6)
    scores = [x["score"] for x in body["results"]]
    assert scores == sorted(scores, reverse=True)


def test_threshold_preset_and_hidden_results(client):
    everything = client.post("/search", json={"query": "annual leave", "top_k": 10, "top_n": 10,
                                              "threshold": 0.0}).json()["results"]
    strict = client.post("/search", json={"query": "annual leave", "top_k": 10, "top_n": 10, "preset": "strict",
                                          "include_hidden": True}).json()
    assert strict["params"]["threshold"] == 0.75
    assert all(x["score"] >= 0.75 for x in strict["results"])
    assert all(x["score"] < 0.75 for x in strict["below_threshold"])
    assert len(strict["results"]) + strict["hidden"] == len(everything)


def test_max_per_doc(client):
    body = client.post("/search", json={"query": "VPN", "top_k": 20, "top_n": 20, "threshold": 0.0,
                                        "max_per_doc": 1}).json()
    docs = [x["doc_id"] for x in body["results"]]
    assert len(docs) == len(set(docs)) > 1


def test_cohere_rerank_shape(client):
    docs = ["Employees get twenty days of annual leave.", {"text": "Reset the VPN token in the portal."},
            "The canteen opens at noon."]
    for path in ("/rerank", "/v1/rerank"):
        r = client.post(path, json={"query": "vpn token", "documents": docs, "top_n": 2, "return_documents": True,
                                    "model": "anything"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["results"]) == 2 and body["meta"]["api_version"]["version"] == "1"
        for x in body["results"]:
            assert 0 <= x["relevance_score"] <= 1
            assert math.isclose(x["relevance_score"], 1 / (1 + math.exp(-x["raw_score"])), rel_tol=1e-6)
            text = docs[x["index"]] if isinstance(docs[x["index"]], str) else docs[x["index"]]["text"]
            assert x["document"] == {"text": text}
        assert body["results"][0]["relevance_score"] >= body["results"][1]["relevance_score"]
    no_docs = client.post("/v1/rerank", json={"query": "vpn", "documents": ["a", "b"]}).json()
    assert all("document" not in x for x in no_docs["results"]) and len(no_docs["results"]) == 2


def test_tei_rerank_shape_and_agreement_with_cohere_shape(client):
    texts = ["Reset the VPN token in the portal.", "Annual leave is twenty days.", "试用期员工离职应当提前三日通知公司"]
    tei = client.post("/rerank", json={"query": "vpn token", "texts": texts, "raw_scores": True,
                                       "return_text": True})
    assert tei.status_code == 200 and isinstance(tei.json(), list)
    ranks = tei.json()
    assert sorted(x["index"] for x in ranks) == [0, 1, 2]
    assert [x["score"] for x in ranks] == sorted((x["score"] for x in ranks), reverse=True)
    assert all(x["text"] == texts[x["index"]] for x in ranks)
    cohere = client.post("/v2/rerank", json={"query": "vpn token", "documents": texts}).json()["results"]
    raw = {x["index"]: x["raw_score"] for x in cohere}
    assert all(math.isclose(x["score"], raw[x["index"]], rel_tol=1e-6) for x in ranks)  # raw_scores: the logit
    sig = client.post("/rerank", json={"query": "vpn token", "texts": texts}).json()
    assert all(0 <= x["score"] <= 1 and "text" not in x for x in sig)


def test_documents_listing(client, service):
    docs = client.get("/documents").json()
    assert {d["doc_id"] for d in docs} == set(service.index.documents)
    salary = next(d for d in docs if d["title"] == "Salary bands")
    assert salary["acl"] == ["hr"] and salary["chunks"] >= 1 and salary["format"] == "md"


def test_openapi_and_swagger(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/search", "/rerank", "/v1/rerank", "/v2/rerank", "/ingest", "/documents", "/documents/{doc_id}",
              "/health", "/info", "/metrics"):
        assert p in paths


def test_metrics_after_traffic(client):
    for _ in range(2):  # the second one is a cache hit
        client.post("/search", json={"query": "laptop on the first day", "top_k": 5})
    client.post("/rerank", json={"query": "q", "texts": ["a", "b", "c"]})
    text = client.get("/metrics").text

    def value(name: str) -> float:
        line = next(line for line in text.splitlines() if line.startswith(name + " ") or line.startswith(name + "{")
                    and line.split("}")[0] + "}" == name)
        return float(line.rsplit(" ", 1)[1])

    assert value('kb_stage_seconds_count{stage="rerank"}') >= 2
    assert value('kb_stage_seconds_count{stage="total"}') >= 1
    assert value('kb_query_cache_total{result="hit"}') >= 1
    assert value("kb_rerank_batch_size_count") >= 2
    assert value("kb_result_score_count") >= 3
    assert value('kb_requests_total{method="POST",route="/search",status="200"}') >= 2


@pytest.mark.parametrize("body, status, words", [
    ({"query": "   "}, 422, "query is empty"),
    ({"query": "x", "top_k": 0}, 422, "top_k"),
    ({"query": "x", "top_n": 101}, 422, "top_n"),
    ({"query": "x", "threshold": 1.5}, 422, "threshold"),
    ({"query": "x", "mode": "magic"}, 422, "mode"),
    ({"query": "x", "unknown": 1}, 422, "unknown"),
    ({"top_k": 5}, 422, "query"),
    ({"query": "x" * 2001}, 413, "2000"),
])
def test_search_errors(client, body, status, words):
    r = client.post("/search", json=body)
    assert r.status_code == status
    assert words in r.json()["error"] and r.json()["error_type"]


@pytest.mark.parametrize("body, status, words", [
    ({"query": "q", "documents": []}, 400, "no documents"),
    ({"query": "q"}, 422, "documents"),
    ({"query": "q", "documents": ["a"], "texts": ["a"]}, 422, "not both"),
    ({"query": "", "documents": ["a"]}, 400, "query is empty"),
    ({"query": "q", "documents": ["a"] * 1001}, 413, "1000"),
    ({"query": "q", "documents": [{"title": "no text"}]}, 422, "text"),
    ({"query": "q", "documents": ["a"], "top_n": 0}, 422, "top_n"),
])
def test_rerank_errors(client, body, status, words):
    r = client.post("/rerank", json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_malformed_and_unknown(client):
    r = client.post("/search", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error_type"] == "validation_error"
    assert client.get("/nowhere").status_code == 404 and client.get("/nowhere").json()["error_type"] == "not_found"
    assert client.get("/search").status_code == 405
    assert client.delete("/documents/nope").status_code == 404


def test_too_much_text_is_413(client):
    r = client.post("/rerank", json={"query": "q", "documents": ["x" * 600_000] * 4})
    assert r.status_code == 413 and "2000000" in r.json()["error"]


def test_not_ready_until_loaded(served):
    from fastapi.testclient import TestClient

    from app.api import create_app

    c = TestClient(create_app(served.settings))  # without the lifespan nothing will load
    h = c.get("/health")
    assert h.status_code == 503 and h.json()["status"] == "loading" and h.headers["retry-after"]
    assert c.post("/search", json={"query": "vpn"}).status_code == 503


def test_failed_load_is_reported(tmp_path):
    from fastapi.testclient import TestClient

    from app.api import create_app
    from app.settings import Settings
    from retrieval.storage import CURRENT

    (tmp_path / "i" / "v-1").mkdir(parents=True)  # an index written by a future version of kb
    (tmp_path / "i" / "v-1" / "manifest.json").write_text('{"format_version": 999}')
    (tmp_path / "i" / CURRENT).write_text("v-1")
    bad = Settings(index_dir=tmp_path / "i", embedder="packaged:all-MiniLM-L6-v2", reranker="none",
                   allowed_hosts=["testserver"])
    with TestClient(create_app(bad, background=False)) as c:
        h = c.get("/health")
        assert h.status_code == 503 and h.json()["status"] == "error" and "--rebuild" not in h.json()["error"]
        r = c.post("/search", json={"query": "vpn"})  # the why, to a caller with a credential (here: open mode)
        assert r.status_code == 503 and "failed to load" in r.json()["error"] and "--rebuild" in r.json()["error"]


def test_no_reranker_means_503_on_rerank_and_recall_only_search(tmp_path, embedder):
    from fastapi.testclient import TestClient

    from tests.app.api.conftest import make_service

    with TestClient(make_service(tmp_path, embedder, tmp_path / "missing-reranker").app()) as c:
        r = c.post("/rerank", json={"query": "q", "documents": ["a"]})
        assert r.status_code == 503 and "missing-reranker" in r.json()["error"]
        s = c.post("/search", json={"query": "vpn token"}).json()
        assert s["reranker"] is None and all(x["score"] is None for x in s["results"])
        assert any("recall-only" in w for w in s["warnings"])
        assert "missing-reranker" in c.get("/info").json()["reranker_error"]
