"""Best bets through real HTTP: /bestbets is for admins only (401 without a key, 403 and an audit entry for anyone
else), bad bodies are 4xx naming the field, changes are audited, and POST /search shows a bet first, once, and only
to callers whose groups may read its document."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.app.api.conftest import live_server, make_service

pytestmark = pytest.mark.slow  # a corpus and a real server for the module: 2.6 s before the first test
KEYS = {"hr-key": ["hr"], "staff-key": [], "admin-key": ["*"]}


@pytest.fixture(scope="module")
def api(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("bestbets-api")
    served = make_service(root, embedder, "none", api_keys=KEYS, database_url=f"sqlite:///{root / 'kb.db'}",
                          vocabulary_reload_s=0.0, recall_mode="lexical", audit_log=root / "audit.jsonl")
    with live_server(served.app()) as url:
        yield url, root, served.service.index


def call(url, method, path, key="admin-key", **kw):
    headers = {"X-API-Key": key} if key else {}
    return httpx.request(method, url + path, headers=headers, timeout=30, **kw)


def search(url, query, key="admin-key"):
    r = call(url, "POST", "/search", key, json={"query": query, "threshold": 0.0, "top_n": 10})
    assert r.status_code == 200
    return r.json()


def audit(root) -> list[dict]:
    return [json.loads(line) for line in (root / "audit.jsonl").read_text(encoding="utf-8").splitlines()]


def salary_chunk(index) -> str:
    return next(c.chunk_id for c in index.chunks.values() if index.documents[c.doc_id].source.endswith("salary.md"))


def test_only_admins_may_list_add_or_remove_and_refusals_are_audited(api):
    url, root, index = api
    body = {"phrases": ["salary"], "chunk_id": salary_chunk(index), "label": "recommended by HR"}
    for key in ("hr-key", "staff-key"):
        for method, path, kw in (("GET", "/bestbets", {}), ("POST", "/bestbets", {"json": body}),
                                 ("DELETE", "/bestbets/bb-x", {})):
            r = call(url, method, path, key, **kw)
            assert r.status_code == 403 and r.json()["error_type"] == "forbidden", (key, method, r.text)
    assert call(url, "GET", "/bestbets", key=None).status_code == 401
    refused = [e for e in audit(root) if e["outcome"] == "refused"]
    assert {e["action"] for e in refused} >= {"GET /bestbets", "POST /bestbets", "DELETE /bestbets/bb-x"}
    assert call(url, "GET", "/bestbets").json()["best_bets"] == []  # the refused calls added nothing


@pytest.mark.parametrize("body, status, said", [
    ({"phrases": ["pay"], "doc_id": "no-such-doc"}, 404, "doc_id"),
    ({"phrases": ["pay"], "chunk_id": "no-such-chunk"}, 404, "chunk_id"),
    ({"phrases": ["pay"]}, 422, "doc_id"),
    ({"phrases": [], "doc_id": "x"}, 422, "phrases"),
    ({"phrases": ["  "], "doc_id": "x"}, 422, "phrases"),
    ({"phrases": ["pay"], "doc_id": "x", "match": "fuzzy"}, 422, "match"),
    ({"phrases": ["pay"], "doc_id": "x", "label": "x" * 81}, 422, "label"),
    ({"phrases": "pay", "doc_id": "x"}, 422, "phrases"),
    ({"phrases": ["pay"], "doc_id": "x", "extra": 1}, 422, "extra"),
])
def test_a_bad_bet_is_a_4xx_that_names_the_field(api, body, status, said):
    url, _, index = api
    if body.get("doc_id") == "x":
        body = {**body, "doc_id": next(iter(index.documents))}
    r = call(url, "POST", "/bestbets", json=body)
    assert r.status_code == status and said in r.text, r.text


def test_a_bet_is_shown_first_once_and_only_to_readers_then_removed(api):
    url, root, index = api
    chunk = salary_chunk(index)
    before = search(url, "salary band pay")
    assert before["best_bets"] == [] and chunk in [r["chunk_id"] for r in before["results"]]
    r = call(url, "POST", "/bestbets", json={"phrases": ["salary", "pay"], "chunk_id": chunk,
                                             "label": "recommended by HR"})
    assert r.status_code == 201, r.text
    bet = r.json()
    assert bet["bet_id"].startswith("bb-") and bet["doc_id"] == index.chunks[chunk].doc_id
    dup = call(url, "POST", "/bestbets", json={"phrases": ["pay", "salary"], "chunk_id": chunk})
    assert dup.status_code == 409 and bet["bet_id"] in dup.json()["error"]
    listed = call(url, "GET", "/bestbets").json()["best_bets"]
    assert [(b["bet_id"], b["in_index"], b["title"]) for b in listed] == [(bet["bet_id"], True, "Salary bands")]

    for key in ("admin-key", "hr-key"):
        res = search(url, "what is the salary band", key)
        assert [(b["label"], b["chunk_id"]) for b in res["best_bets"]] == [("recommended by HR", chunk)]
        assert chunk not in [r["chunk_id"] for r in res["results"]]  # not shown twice
        assert [r["rank"] for r in res["results"]] == list(range(1, len(res["results"]) + 1))
    staff = search(url, "what is the salary band", "staff-key")
    assert staff["best_bets"] == [] and "Band B3" not in json.dumps(staff)

    gone = call(url, "DELETE", f"/bestbets/{bet['bet_id']}")
    assert gone.status_code == 200 and gone.json()["removed"]["bet_id"] == bet["bet_id"]
    assert search(url, "what is the salary band", "hr-key")["best_bets"] == []
    assert call(url, "DELETE", f"/bestbets/{bet['bet_id']}").status_code == 404
    done = [(e["action"], e["bet_id"]) for e in audit(root) if e["outcome"] == "done"]
    assert done == [("add best bet", bet["bet_id"]), ("remove best bet", bet["bet_id"])]
