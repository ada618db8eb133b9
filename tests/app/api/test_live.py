"""The API on a real uvicorn over loopback: the official Cohere client, concurrency, overload, body limits."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.app.api.conftest import live_server


@pytest.fixture(scope="module")
def url(served):
    with live_server(served.app()) as base:
        yield base


def test_official_cohere_client(url):
    cohere = pytest.importorskip("cohere")  # a dev dependency; CI installs it
    docs = ["Employees get twenty days of annual leave.", "Reset the VPN token in the self-service portal.",
            "The canteen opens at noon."]
    co = cohere.Client(api_key="unused", base_url=url)
    resp = co.rerank(model="bge-reranker-v2-m3", query="vpn token", documents=docs, top_n=2, return_documents=True)
    ours = httpx.post(url + "/v1/rerank", json={"query": "vpn token", "documents": docs}).json()["results"]
    assert [r.index for r in resp.results] == [r["index"] for r in ours][:2]
    assert [r.relevance_score for r in resp.results] == [r["relevance_score"] for r in ours][:2]
    assert resp.results[0].document.text == docs[resp.results[0].index]
    v2 = cohere.ClientV2(api_key="unused", base_url=url).rerank(model="m", query="vpn token", documents=docs)
    assert [r.index for r in v2.results] == [r["index"] for r in ours]


@pytest.mark.slow
def test_fifty_parallel_requests_match_serial(url, service):
    queries = ["how do I reset my VPN token", "annual leave days", "laptop first day", "试用期离职要提前几天",
               "salary band B3"]
    bodies = [{"query": queries[i % len(queries)], "top_k": 10, "top_n": 5, "threshold": 0.0} for i in range(50)]
    serial = {q: httpx.post(url + "/search", json={"query": q, "top_k": 10, "top_n": 5, "threshold": 0.0},
                            timeout=60).json() for q in queries}
    rerank_docs = ["Reset the VPN token in the portal.", "Annual leave is twenty days.", "试用期员工离职应当提前三日通知公司"]
    serial_rr = httpx.post(url + "/rerank", json={"query": "vpn", "texts": rerank_docs}, timeout=60).json()
    service.cache.clear()  # the parallel requests must compute, not read what the serial ones cached

    def call(i: int):
        if i % 2:
            return "rerank", httpx.post(url + "/rerank", json={"query": "vpn", "texts": rerank_docs}, timeout=120)
        return "search", httpx.post(url + "/search", json=bodies[i], timeout=120)

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(call, range(50)))
    assert all(r.status_code == 200 for _, r in answers), [r.text for _, r in answers if r.status_code != 200]
    # with cross-request batching (on by default) a pair may share a forward pass with other requests' pairs and
    # be padded to another length: float32 scores then differ in their last bits, never more than ~1e-6
    for kind, r in answers:
        if kind == "rerank":
            assert [x["index"] for x in r.json()] == [x["index"] for x in serial_rr]
            assert [x["score"] for x in r.json()] == pytest.approx([x["score"] for x in serial_rr], abs=1e-6)
        else:
            got = r.json()
            want = serial[got["query"]]
            assert [x["chunk_id"] for x in got["results"]] == [x["chunk_id"] for x in want["results"]]
            assert [x["score"] for x in got["results"]] == \
                   pytest.approx([x["score"] for x in want["results"]], abs=1e-6)


def test_overload_answers_429_quickly(served):
    # without batching, 1 running and none waiting (with it, admission is at least 16: app.api.limits)
    settings = served.settings.model_copy(update={"api_max_concurrency": 1, "api_max_queue": 0,
                                                  "rerank_batching": False})
    docs = ["a long enough candidate passage about VPN tokens and leave " * 20] * 200
    with live_server(served.app(settings)) as base:
        def call(_):
            return httpx.post(base + "/rerank", json={"query": "vpn", "texts": docs}, timeout=120)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(call, range(8)))
    codes = sorted(r.status_code for r in answers)
    assert set(codes) == {200, 429}, codes
    busy = next(r for r in answers if r.status_code == 429)
    assert busy.json()["error_type"] == "overloaded" and busy.headers["retry-after"]
    ok = [r.elapsed.total_seconds() for r in answers if r.status_code == 200]
    refused = [r.elapsed.total_seconds() for r in answers if r.status_code == 429]
    assert max(refused) < max(ok)  # refused without waiting for the model


def test_request_body_limit(served):
    settings = served.settings.model_copy(update={"api_max_json_mb": 0.01, "api_max_text_chars": 1000})
    with live_server(served.app(settings)) as base:
        r = httpx.post(base + "/search", json={"query": "q" * 20_000})
        assert r.status_code == 413 and "0.01 MB" in r.json()["error"] and "api_max_json_mb" in r.json()["error"]
        # /rerank has room for api_max_text_chars of UTF-8 text on top: 0.01 MB + 3,000 bytes
        r = httpx.post(base + "/rerank", json={"query": "q", "documents": ["x" * 20_000]})
        assert r.status_code == 413 and "api_max_text_chars" in r.json()["error"]

        def chunks():  # no Content-Length: the limit holds while streaming too
            for _ in range(10):
                yield b"x" * 4096

        r = httpx.post(base + "/search", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
