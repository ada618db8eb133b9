"""Feedback and analytics over HTTP: /search returns the query_id that POST /feedback refers to; judgments are
checked against the caller and what the search showed; GET /analytics is for admins; the CLI reads the same store
(`kb analytics`, `kb feedback export`) and learns from it (`kb eval --judgments`, `kb tune --judgments`)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.cli import app as kb
from app.components import make_search, open_events, open_index
from app.settings import get_settings
from tests.app.api.conftest import Served, make_service

KEYS = {"admin": ["*"], "hr": ["hr"], "it": ["it"]}
QUERIES = ["how do I reset my VPN token", "how many days of annual leave", "salary band B3",
           "where is the company gym"]


@pytest.fixture(scope="module")
def api(tmp_path_factory, embedder, tiny_reranker):
    base = make_service(tmp_path_factory.mktemp("feedback"), embedder, tiny_reranker, api_keys=KEYS)
    settings = base.settings
    served = Served(settings, make_search(settings, embedder, open_index(settings, embedder),
                                          events=open_events(settings)))
    with TestClient(served.app()) as c:
        yield served, c
    served.service.events.close()


def search(c, key: str, query: str, **extra) -> dict:
    r = c.post("/search", json={"query": query, "threshold": 0.0, **extra}, headers={"X-API-Key": key})
    assert r.status_code == 200, r.text
    return r.json()


def judge(c, key: str, **body):
    return c.post("/feedback", json=body, headers={"X-API-Key": key})


def test_feedback_on_a_search_result(api):
    _, c = api
    res = search(c, "hr", QUERIES[2])
    assert len(res["query_id"]) == 32
    chunk = res["results"][0]["chunk_id"]
    r = judge(c, "hr", query_id=res["query_id"], chunk_id=chunk, useful=True, comment="exactly this")
    assert r.status_code == 201 and r.json()["id"] > 0
    none = judge(c, "hr", query_id=res["query_id"], useful=False)  # "none of these answers my question"
    assert none.status_code == 201
    assert judge(c, "hr", query_id="0" * 32, chunk_id=chunk, useful=True).status_code == 404
    wrong = judge(c, "hr", query_id=res["query_id"], chunk_id="not-shown", useful=True)
    assert wrong.status_code == 422 and "not among the results" in wrong.json()["error"]
    theirs = judge(c, "it", query_id=res["query_id"], chunk_id=chunk, useful=False)
    assert theirs.status_code == 403 and theirs.json()["error_type"] == "forbidden"
    assert judge(c, "admin", query_id=res["query_id"], chunk_id=chunk, useful=False).status_code == 201
    assert judge(c, "hr", query_id=res["query_id"], useful=True).status_code == 422  # none answers: not useful
    assert c.post("/feedback", json={"query_id": res["query_id"], "useful": True}).status_code == 401


def test_analytics_is_for_admins_and_counts_what_happened(api):
    served, c = api
    for q in QUERIES[:3]:
        res = search(c, "it", q)
        judge(c, "it", query_id=res["query_id"], chunk_id=res["results"][0]["chunk_id"], useful=True)
    search(c, "it", QUERIES[3], threshold=1.0)  # nothing reaches 1.0: no answer
    assert c.get("/analytics", headers={"X-API-Key": "it"}).status_code == 403
    served.service.events.flush()
    r = c.get("/analytics?days=7", headers={"X-API-Key": "admin"})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["searches"] >= 5 and report["feedback"]["up"] >= 3
    assert {"searches", "feedback", "top_queries", "no_answer_queries", "latency_ms", "per_document"} <= set(report)
    assert {"query": QUERIES[3], "count": 1, "searches": 1}.items() <= report["no_answer_queries"][0].items()
    assert all(d["title"] for d in report["per_document"])  # named from the index
    assert c.get("/analytics?days=0", headers={"X-API-Key": "admin"}).status_code == 422
    metrics = c.get("/metrics", headers={"X-API-Key": "admin"}).text
    assert 'kb_feedback_total{useful="true"}' in metrics and 'kb_search_answers_total{answered="no"}' in metrics
    assert "kb_events_dropped 0.0" in metrics and "kb_events_up 1.0" in metrics
    model = served.service.reranker.name  # thumbs per model: how a canary fares against the serving model
    assert f'kb_model_feedback_total{{model="{model}",useful="true"}}' in metrics
    [row] = [m for m in report["by_reranker"] if m["reranker"] == model]
    assert row["searches"] >= 5 and row["up"] >= 3


@pytest.mark.slow
def test_the_cli_reads_exports_and_learns_from_the_judgments(api, tmp_path, monkeypatch):
    served, c = api
    for q in QUERIES[:3]:
        res = search(c, "admin", q, top_n=3)
        for i, r in enumerate(res["results"]):
            judge(c, "admin", query_id=res["query_id"], chunk_id=r["chunk_id"], useful=i == 0)
    served.service.events.flush()
    s = served.settings
    monkeypatch.setenv("KB_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("KB_INDEX_DIR", str(s.index_dir))
    monkeypatch.setenv("KB_EMBEDDER", s.embedder)
    monkeypatch.setenv("KB_RERANKER", s.reranker)
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        shown = runner.invoke(kb, ["analytics", "--json"])
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.stdout)["searches"] >= 3
        file = tmp_path / "judgments.jsonl"
        exported = runner.invoke(kb, ["feedback", "export", str(file)])
        assert exported.exit_code == 0, exported.output
        rows = [json.loads(line) for line in file.read_text().splitlines()]
        assert rows and {"query", "groups", "chunk_id", "doc_id", "useful", "text"} <= set(rows[0])
        assert all(r["text"] for r in rows if r["chunk_id"])  # the judged chunks' text, from the index
        evaluated = runner.invoke(kb, ["eval", "--judgments", str(file), "--json"])
        assert evaluated.exit_code == 0, evaluated.output
        ev = json.loads(evaluated.stdout)
        assert ev["answerable"] >= 3 and 0 <= ev["metrics"]["mrr@10"] <= 1 and ev["metrics"]["hit@5"] == 1.0
        tuned = runner.invoke(kb, ["tune", "--judgments", str(file), "--json", "--target-precision", "0.5"])
        assert tuned.exit_code == 0, tuned.output
        t = json.loads(tuned.stdout)
        latest = {(r["query"], str(r["groups"]), r["chunk_id"]): r["useful"] for r in rows if r["chunk_id"]}
        assert t["judged"] == "judgments" and t["pairs"] == len(latest)  # one pair per judged chunk, its latest word
        assert t["relevant_pairs"] == sum(latest.values()) and t["k_sweep"] == []
    finally:
        get_settings.cache_clear()
