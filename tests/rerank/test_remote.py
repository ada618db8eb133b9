"""`RemoteReranker` over real HTTP: against a TEI-contract server (uvicorn on loopback, scoring with a real tiny
cross-encoder, with TEI's batch limit and injected 429/503/413/500 faults), and against this project's own
`kb serve` app, whose scores must equal the local engine's."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.identity import OPERATOR
from app.services.request import SearchRequest
from rerank.engines.factory import create_reranker
from rerank.engines.remote import RemoteReranker, RemoteRerankError, is_remote, rerank_url
from rerank.errors import RerankerLoadError, RerankerParameterError
from rerank.types import RerankerOptions
from tests.app.api.conftest import free_port, live_server, make_service
from tests.tiny_models import build_tiny_cross_encoder

TEXTS = [f"passage {i}: " + ("reset the VPN token in the portal" if i % 3 == 0 else "annual leave is twenty days")
         + " extra words" * (i % 5) for i in range(23)]
QUERY = "how do I reset my VPN token"


class TeiLike:
    """TEI's /rerank and /info contract over a real local cross-encoder, with faults to inject."""

    def __init__(self, engine, max_client_batch_size=32, api_key=None):
        self.engine, self.limit, self.api_key = engine, max_client_batch_size, api_key
        self.faults: list[int] = []  # status codes answered to the next /rerank requests, in order
        self.max_texts_accepted: int | None = None  # above this, 413 although /info does not say so (tokens)
        self.delay_s = 0.0
        self.batches: list[int] = []  # sizes of the /rerank requests answered with scores
        self.requests = 0
        self.lock = threading.Lock()
        app = FastAPI()

        @app.get("/health")
        def health():
            return {}

        @app.get("/info")
        def info(request: Request):
            if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            return {"model_id": "tiny-bert", "model_dtype": "float32", "model_type": {"reranker": {}},
                    "max_client_batch_size": self.limit, "max_input_length": 64, "version": "test"}

        @app.post("/rerank")
        def rerank(body: dict, request: Request):
            with self.lock:
                self.requests += 1
                fault = self.faults.pop(0) if self.faults else None
            if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            if fault is not None:
                return JSONResponse({"error": "injected", "error_type": str(fault)}, status_code=fault,
                                    headers={"Retry-After": "0"} if fault in (429, 503) else {})
            texts = body["texts"]
            if len(texts) > self.limit or (self.max_texts_accepted and len(texts) > self.max_texts_accepted):
                return JSONResponse({"error": "batch too large", "error_type": "Validation"}, status_code=413)
            assert body["raw_scores"] is True and body["truncate"] is True
            time.sleep(self.delay_s)
            with self.lock:  # one engine call at a time (TEI queues requests into its own GPU batches)
                scores = self.engine.score(body["query"], texts)
                self.batches.append(len(texts))
            ranked = sorted(range(len(texts)), key=lambda i: -scores[i][0])  # TEI answers best first
            return [{"index": i, "score": scores[i][0] if body["raw_scores"] else scores[i][1]} for i in ranked]

        self.app = app


@pytest.fixture(scope="module")
def tei(bert_engine):
    server = TeiLike(bert_engine, max_client_batch_size=8)
    with live_server(server.app) as url:
        server.url = url
        yield server


@pytest.fixture
def fresh(tei):
    tei.faults, tei.batches, tei.requests, tei.max_texts_accepted, tei.delay_s = [], [], 0, None, 0.0
    return tei


def test_names_and_factory():
    assert is_remote("tei+http://reranker:80") and is_remote("https://x/rerank") and not is_remote("BAAI/bge-m3")
    assert rerank_url("tei+http://reranker:80") == "http://reranker:80/rerank"
    assert rerank_url("http://h:8080/rerank/") == "http://h:8080/rerank"
    r = create_reranker("tei+http://reranker:80", RerankerOptions(batch_size=16))
    assert isinstance(r, RemoteReranker) and r.batch_size == 16 and not r.loaded
    with pytest.raises(RerankerParameterError, match="timeout"):
        RemoteReranker("tei+http://h:1", timeout=0)


def test_scores_equal_the_local_engine_in_input_order_in_batches_of_the_servers_limit(fresh, bert_engine):
    remote = RemoteReranker("tei+" + fresh.url, RerankerOptions(batch_size=32)).load()
    assert remote.info().effective_batch_size == 8  # TEI's max_client_batch_size wins over ours
    assert remote.device_choice.device == "remote" and "tiny-bert" in remote.device_choice.reason
    got = remote.score(QUERY, TEXTS)
    want = bert_engine.score(QUERY, TEXTS)
    assert [r for r, _ in got] == pytest.approx([r for r, _ in want], abs=1e-5)
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-6)
    assert all(isinstance(r, float) and isinstance(s, float) for r, s in got)
    assert sorted(fresh.batches) == [7, 8, 8]  # 23 texts in batches of 8
    assert remote.score(QUERY, []) == []


def test_429_and_503_are_retried_then_succeed(fresh, bert_engine):
    remote = RemoteReranker(fresh.url, retries=3, backoff=0.01, concurrency=1).load()
    fresh.faults = [429, 503, 503]
    got = remote.score(QUERY, TEXTS[:5])
    assert [r for r, _ in got] == pytest.approx([r for r, _ in bert_engine.score(QUERY, TEXTS[:5])], abs=1e-5)
    assert fresh.requests == 4 and remote.info().details["retried"] == 3


def test_retries_are_bounded(fresh):
    remote = RemoteReranker(fresh.url, retries=2, backoff=0.01).load()
    fresh.faults = [503] * 10
    with pytest.raises(RemoteRerankError, match="failed 3 times, last: 503"):
        remote.score(QUERY, TEXTS[:3])
    assert fresh.requests == 3


@pytest.mark.parametrize("status", [500, 400, 422])
def test_other_errors_are_not_retried(fresh, status):
    remote = RemoteReranker(fresh.url, retries=3, backoff=0.01).load()
    fresh.faults = [status]
    with pytest.raises(RemoteRerankError, match=f"answered {status}"):
        remote.score(QUERY, TEXTS[:3])
    assert fresh.requests == 1


def test_413_halves_the_batch_and_remembers(fresh, bert_engine):
    fresh.max_texts_accepted = 3  # e.g. the server's max_batch_tokens: /info cannot tell us
    remote = RemoteReranker(fresh.url, RerankerOptions(batch_size=8)).load()
    got = remote.score(QUERY, TEXTS[:8])
    assert [r for r, _ in got] == pytest.approx([r for r, _ in bert_engine.score(QUERY, TEXTS[:8])], abs=1e-5)
    assert max(fresh.batches) <= 3 and sum(fresh.batches) == 8
    assert remote.info().effective_batch_size <= 3
    fresh.batches = []
    remote.score(QUERY, TEXTS[:6])
    assert all(b <= 3 for b in fresh.batches) and sum(fresh.batches) == 6  # no 413 round trip needed any more
    fresh.max_texts_accepted = 0.5  # nothing fits
    with pytest.raises(RemoteRerankError, match="single text"):
        remote.score(QUERY, TEXTS[:2])


def test_unreachable_server_is_a_load_error_after_bounded_retries():
    remote = RemoteReranker(f"tei+http://127.0.0.1:{free_port()}", retries=2, backoff=0.01)
    with pytest.raises(RerankerLoadError, match="cannot be reached.*failed 3 times.*ConnectError"):
        remote.load()
    assert remote.info().details["retried"] == 2 and not remote.loaded


def test_read_timeout_is_not_retried(fresh):
    remote = RemoteReranker(fresh.url, timeout=0.3, retries=3, backoff=0.01).load()
    fresh.delay_s = 2.0
    with pytest.raises(RemoteRerankError, match="did not answer within 0.3 s"):
        remote.score(QUERY, TEXTS[:2])
    assert fresh.requests == 1


def test_api_key_is_sent_as_bearer_token(bert_engine):
    server = TeiLike(bert_engine, api_key="s3cret")
    with live_server(server.app) as url:
        with pytest.raises(RerankerLoadError, match="refused the API key"):
            RemoteReranker(url).load()
        assert len(RemoteReranker(url, RerankerOptions(api_key="s3cret")).score(QUERY, TEXTS[:2])) == 2


def test_malformed_answers_are_named(bert_engine):
    app = FastAPI()
    app.get("/health")(lambda: {})

    @app.post("/rerank")
    def duplicate_index(body: dict):
        return [{"index": 0, "score": 1.0}, {"index": 0, "score": 2.0}]

    with live_server(app) as url:
        remote = RemoteReranker(url).load()  # no /info: a TEI-compatible server need not have one
        assert remote.info().effective_batch_size == 32
        with pytest.raises(RemoteRerankError, match="each of 0..1 must appear once"):
            remote.score(QUERY, TEXTS[:2])


def test_kb_serve_as_the_remote_reranker_matches_local_scores(tmp_path, embedder):
    """This project's own `kb serve` app is a TEI-compatible server: a second SearchService whose reranker is
    its URL ranks and scores exactly as one with the local cross-encoder."""

    model = build_tiny_cross_encoder(tmp_path / "tiny_reranker", arch="bert", seed=3)  # 512 positions, as settings
    served = make_service(tmp_path / "server", embedder, model)
    local = served.service
    assert local.reranker_error is None
    with live_server(served.app()) as url:
        remote = RemoteReranker("tei+" + url).load()
        got, want = remote.score(QUERY, TEXTS), local.reranker.score(QUERY, TEXTS)
        assert [x for pair in got for x in pair] == pytest.approx([x for pair in want for x in pair], abs=1e-6)

        client = make_service(tmp_path / "client", embedder, "tei+" + url).service
        assert client.reranker_error is None and client.reranker.kind == "remote"
        for query in ("reset VPN token", "how many days of annual leave"):
            a = local.search(SearchRequest.of(query, top_k=10, top_n=5, threshold=0.0), OPERATOR)
            b = client.search(SearchRequest.of(query, top_k=10, top_n=5, threshold=0.0), OPERATOR)
            assert [r.hit.chunk.text for r in b.results] == [r.hit.chunk.text for r in a.results]  # ids: paths
            assert [r.score for r in b.results] == pytest.approx([r.score for r in a.results], abs=1e-6)
            assert b.device == "remote"
